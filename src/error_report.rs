//! An error and its causes on one line, each cause once. The library's errors include
//! their cause in their own message (so a gRPC status or a log line carries it), and
//! also declare it as their `source`; printing the whole chain would then repeat it.

use std::error::Error;

/// `error: cause: cause's cause`, leaving out each cause whose message the line
/// already holds.
pub fn error_report(error: &(dyn Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct Io {
        path: String,
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("import report: {0}")]
        Report(#[source] Io),
        #[error("writing failed")]
        Quiet(#[source] Io),
    }

    fn full() -> std::io::Error {
        std::io::Error::from_raw_os_error(28)
    }

    #[test]
    fn each_cause_appears_once() {
        let e = anyhow::Error::new(Outer::Report(Io {
            path: "/out/import-report.json".into(),
            source: full(),
        }))
        .context("pack pico-banana");
        let line = error_report(e.as_ref());
        assert_eq!(
            line,
            format!(
                "pack pico-banana: import report: /out/import-report.json: {}",
                full()
            )
        );
        assert_eq!(line.matches("os error 28").count(), 1, "{line}");
        // The full chain of the same error repeats the cause: this is what it replaces.
        assert_eq!(format!("{e:#}").matches("os error 28").count(), 3);
    }

    #[test]
    fn a_cause_the_message_leaves_out_is_still_printed() {
        let e = Outer::Quiet(Io {
            path: "shard-000.tar.zst".into(),
            source: full(),
        });
        assert_eq!(
            error_report(&e),
            format!("writing failed: shard-000.tar.zst: {}", full())
        );
    }
}
