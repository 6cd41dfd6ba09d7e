//! Progress bars shared by the long-running commands (hidden when stderr is not a
//! terminal, so logs and CI output stay clean).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `total` units labelled `what`.
pub fn bar(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} ({{per_sec}}, eta {{eta}}) {{msg}}"
        ))
        .expect("static template")
        .progress_chars("=> "),
    );
    pb
}
