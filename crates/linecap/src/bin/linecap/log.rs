//! What the engine says (through `tracing`), as people read it on stderr:
//! one line per event, `linecap: message`. The engine never prints; this
//! binary decides what a person sees.

use std::fmt::Write as _;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Events at `INFO` and above, printed as `linecap: message`.
struct StderrLines;

/// The event's message and any other fields, as `message (k=v, ...)`.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let sep = if self.fields.is_empty() { "" } else { ", " };
            let _ = write!(self.fields, "{sep}{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}

impl Subscriber for StderrLines {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::INFO
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = Line::default();
        event.record(&mut line);
        let mut text = format!("linecap: {}", line.message);
        if !line.fields.is_empty() {
            let _ = write!(text, " ({})", line.fields);
        }
        // A live line may be on the terminal: start on a fresh line.
        let _ = writeln!(std::io::stderr().lock(), "{}{text}", crate::live::clear_prefix());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Installs the stderr subscriber for the whole process.
pub fn init() {
    // Only fails if one is installed already, which would be ours.
    let _ = tracing::subscriber::set_global_default(StderrLines);
}
