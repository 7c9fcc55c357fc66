//! `--config FILE`: a TOML file whose keys are a command's long options
//! (`listen = ":9000"`, `cpus = [1]`, `verify = "seq"`, `quiet = true`),
//! spliced into the command line where `--config FILE` stood, so options
//! typed after it override the file. A key that is no option is an error
//! from the same parser that checks the command line: the file can set
//! every option and nothing else.

use std::path::Path;

/// The arguments `--config FILE` stands for.
pub fn args_from_file(path: &Path) -> Result<Vec<String>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read --config {}: {e}", path.display()))?;
    args_from_toml(&text).map_err(|e| format!("--config {}: {e}", path.display()))
}

/// The arguments a TOML table stands for (in key order: each option
/// appears once in a table, so the order does not matter).
pub fn args_from_toml(text: &str) -> Result<Vec<String>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut args = Vec::new();
    for (key, value) in &table {
        if key == "config" {
            return Err("a config file cannot name another (config)".into());
        }
        let option = format!("--{}", key.replace('_', "-"));
        match value {
            toml::Value::Boolean(true) => args.push(option),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                let parts: Result<Vec<String>, String> = items.iter().map(|v| scalar(key, v)).collect();
                args.extend([option, parts?.join(",")]);
            }
            v => args.extend([option, scalar(key, v)?]),
        }
    }
    Ok(args)
}

fn scalar(key: &str, v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        _ => Err(format!("{key}: give a string, a number, true/false or a list of them")),
    }
}

/// The command line with every `--config FILE` (or `--config=FILE`)
/// replaced by the options in FILE.
pub fn expand(args: Vec<String>) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let file = if arg == "--config" {
            Some(it.next().ok_or("--config needs a FILE")?)
        } else {
            arg.strip_prefix("--config=").map(str::to_string)
        };
        match file {
            Some(f) => out.extend(args_from_file(Path::new(&f))?),
            None => out.push(arg),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_options_in_order() {
        let toml =
            "listen = \":9000\"\ncpus = [1, 2]\nverify = \"seq\"\nquiet = true\njson = false\nslots = 8192\n";
        let expected =
            ["--cpus", "1,2", "--listen", ":9000", "--quiet", "--slots", "8192", "--verify", "seq"];
        assert_eq!(args_from_toml(toml).unwrap(), expected);
        assert!(args_from_toml("[table]\nx = 1\n").is_err());
        assert!(args_from_toml("config = \"other.toml\"\n").is_err());
        assert!(args_from_toml("listen = ").is_err());
    }

    #[test]
    fn the_shipped_example_names_only_capture_options() {
        let example = include_str!("../../../../../dist/linecap.toml.example");
        let mut line = vec!["linecap".to_string(), "capture".to_string()];
        line.extend(args_from_toml(example).unwrap());
        let parsed = crate::cli_command().try_get_matches_from(&line);
        assert!(parsed.is_ok(), "{line:?}: {}", parsed.unwrap_err());
    }

    #[test]
    fn config_is_spliced_where_it_stood() {
        let dir = std::env::temp_dir().join(format!("linecap-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, "listen = \":9001\"\n").unwrap();
        let line =
            ["linecap", "capture", "--config", f.to_str().unwrap(), "--quiet"].map(String::from).to_vec();
        assert_eq!(expand(line).unwrap(), ["linecap", "capture", "--listen", ":9001", "--quiet"]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(expand(vec!["--config".into()]).is_err());
    }
}
