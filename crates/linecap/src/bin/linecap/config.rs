//! `--config FILE`: a TOML file whose keys are a command's long options
//! (`listen = ":9000"`, `cpus = [1]`, `verify = "seq"`, `quiet = true`),
//! spliced into the command line where `--config FILE` stood, so options
//! typed after it override the file. A key that is no option is an error
//! from the same parser that checks the command line: the file can set
//! every option and nothing else.

use std::path::Path;

/// The most a config file may hold: options, not data.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The arguments `--config FILE` stands for. It must be a regular file of
/// at most 1 MiB: a FIFO or a device under the name is refused, never
/// opened (opening a FIFO for reading waits for a writer), and the open
/// itself does not block should one be swapped in meanwhile.
pub fn args_from_file(path: &Path) -> Result<Vec<String>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display();
    let cannot = |e: std::io::Error| format!("cannot read --config {shown}: {e}");
    if !std::fs::metadata(path).map_err(cannot)?.is_file() {
        return Err(format!("--config {shown} is not a regular file"));
    }
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(format!("--config {shown} is not a regular file"));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(format!("--config {shown} is larger than 1 MiB: a config file holds options"));
    }
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES).read_to_string(&mut text).map_err(cannot)?;
    args_from_toml(&text).map_err(|e| format!("--config {shown}: {e}"))
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
        assert!(expand(vec!["--config".into()]).is_err());
        // A FIFO under the name is refused at once, not waited on.
        let fifo = dir.join("fifo.toml");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        assert!(args_from_file(&fifo).unwrap_err().contains("not a regular file"));
        assert!(args_from_file(&dir).unwrap_err().contains("not a regular file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
