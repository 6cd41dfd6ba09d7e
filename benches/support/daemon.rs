//! Benchmark support: an `editfeed serve` process on a free loopback port, and its
//! memory from /proc, so that figures are the daemon's alone; and the clients' runtime.

#![allow(dead_code)]

use std::time::Duration;

/// A daemon process, killed when dropped.
pub struct Daemon {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: std::process::Child,
}

impl Daemon {
    /// Starts `editfeed serve --listen 127.0.0.1:PORT` with `args` appended and waits
    /// until it accepts connections.
    pub async fn start(args: &[&str]) -> Daemon {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_editfeed"))
            .args(["serve", "--listen", &addr.to_string()])
            .args(args)
            .args(["--admin-listen", "127.0.0.1:0"])
            .env("EDITFEED_LOG_LEVEL", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let endpoint = format!("http://{addr}");
        for _ in 0..200 {
            if editfeed::transport::client::connect(&endpoint)
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Daemon { endpoint, child }
    }

    /// A `/proc/PID/status` field in KiB (`VmRSS:` now, `VmHWM:` peak).
    pub fn kib(&self, key: &str) -> u64 {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The two-thread tokio runtime the benchmarks' clients (and in-process daemons) run on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
