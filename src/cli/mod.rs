//! Operator commands. Each command parses its arguments (pure), then applies
//! them (I/O). Exit codes: 0 ok, 1 error, 2 bad usage (clap's own).

pub mod check_config;
pub mod check_name;
pub mod hash_password;
pub mod import;
pub mod listings;
pub mod output;
pub mod reprocess;
pub mod serve;
pub mod stats;
pub mod token;
pub mod webhooks;

use crate::config::{LogFormat, Settings};
use anyhow::Result;
use std::path::Path;

/// Reads `depot.toml`; relative paths in it resolve against the current
/// directory.
pub(crate) fn load_settings(path: &Path) -> Result<Settings> {
    let cwd = std::env::current_dir()?;
    Settings::load(path, &cwd).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))
}

/// Installs the global tracing subscriber (`RUST_LOG` overrides the level).
/// The text format escapes control characters in every field: a file name
/// with a newline cannot start a line of its own in the log.
/// Log directives added to `log.level`: russh warns about every channel
/// request it does not know (PuTTY's psftp sends
/// `simple@putty.projects.tartarus.org` on each session) although it
/// answers them with a failure, which clients expect; that is not news for
/// an operator.
const QUIET: &str = "russh::server::encrypted=error";

fn filter_for(level: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::new(format!("{level},{QUIET}"))
}

pub(crate) fn init_logging(format: LogFormat, level: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| filter_for(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.fmt_fields(log_text::EscapedFields).try_init(),
    };
}

pub mod log_text {
    //! Field formatting for the text log: like tracing's default
    //! (`message` bare, then `name=value`), with control characters and
    //! Unicode line separators written as escapes.

    use std::fmt::{self, Write as _};
    use tracing::field::{Field, Visit};
    use tracing_subscriber::field::RecordFields;
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::FormatFields;

    pub(crate) struct EscapedFields;

    impl<'w> FormatFields<'w> for EscapedFields {
        fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
            let mut v = Escaping {
                writer,
                first: true,
                result: Ok(()),
            };
            fields.record(&mut v);
            v.result
        }
    }

    struct Escaping<'w> {
        writer: Writer<'w>,
        first: bool,
        result: fmt::Result,
    }

    impl Escaping<'_> {
        fn field(&mut self, field: &Field, value: fmt::Arguments<'_>) {
            if self.result.is_err() || field.name().starts_with("log.") {
                return;
            }
            let sep = if std::mem::take(&mut self.first) {
                ""
            } else {
                " "
            };
            let mut text = String::new();
            let _ = text.write_fmt(value);
            let text = escape(&text);
            self.result = match field.name() {
                "message" => write!(self.writer, "{sep}{text}"),
                name => write!(self.writer, "{sep}{name}={text}"),
            };
        }
    }

    impl Visit for Escaping<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            match field.name() {
                "message" => self.field(field, format_args!("{value}")),
                _ => self.field(field, format_args!("{value:?}")),
            }
        }

        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.field(field, format_args!("{value:?}"))
        }
    }

    /// `text` with every control character (newline, carriage return,
    /// escape...) and line or paragraph separator as a `\n` / `\u{..}` escape.
    pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
        let bad = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
        if !text.contains(bad) {
            return std::borrow::Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len() + 8);
        for c in text.chars() {
            match bad(c) {
                true => out.extend(c.escape_default()),
                false => out.push(c),
            }
        }
        std::borrow::Cow::Owned(out)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn control_characters_are_escaped() {
            assert_eq!(escape("a.mp3"), "a.mp3");
            assert_eq!(
                escape("x\nERROR forged\r\u{1b}[31m\u{2028}"),
                "x\\nERROR forged\\r\\u{1b}[31m\\u{2028}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing_subscriber::layer::SubscriberExt;

    /// The warning russh logs for psftp's channel request is filtered out;
    /// the level asked for still holds everywhere else.
    #[test]
    fn russh_unknown_channel_requests_are_not_warnings() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        struct Collect(std::sync::Arc<std::sync::Mutex<Vec<String>>>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Collect {
            fn on_event(
                &self,
                e: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                let m = e.metadata();
                if let Ok(mut v) = self.0.lock() {
                    v.push(format!("{} {}", m.target(), m.level()));
                }
            }
        }
        let subscriber = tracing_subscriber::registry()
            .with(super::filter_for("info"))
            .with(Collect(seen.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::event!(target: "russh::server::encrypted", Level::WARN, "unknown channel request simple@putty.projects.tartarus.org");
            tracing::event!(target: "depot::sftp", Level::WARN, "kept");
            tracing::event!(target: "depot::sftp", Level::DEBUG, "dropped");
        });
        assert_eq!(*seen.lock().unwrap(), vec!["depot::sftp WARN".to_string()]);
    }
}
