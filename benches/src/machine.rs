//! What the benchmark knows of the machine and the process: CPU, cores, memory, kernel,
//! the checkout's commit, and the process's resident set (now and at its peak) from `/proc`.

use serde::Serialize;

/// The machine a result was measured on.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Logical cores available to the process.
    pub cores: usize,
    /// Total memory in bytes.
    pub memory_bytes: u64,
    /// Kernel release.
    pub kernel: String,
    /// Git commit of the checkout, when known.
    pub commit: Option<String>,
    /// UTC time of the run (RFC 3339).
    pub date: String,
}

fn proc_field(file: &str, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

/// A `/proc/self/status` size field (`VmRSS`, `VmHWM`) in bytes.
fn status_bytes(name: &str) -> u64 {
    proc_field("/proc/self/status", name)
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The process's resident set now.
pub fn rss() -> u64 {
    status_bytes("VmRSS")
}

/// The process's largest resident set so far.
pub fn peak_rss() -> u64 {
    status_bytes("VmHWM")
}

impl Machine {
    /// Describes this machine.
    pub fn describe() -> Machine {
        let memory_kb = proc_field("/proc/meminfo", "MemTotal")
            .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        Machine {
            cpu: proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes: memory_kb * 1024,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".into(), |s| s.trim().into()),
            commit,
            date: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }
    }

    /// One line for tables.
    pub fn line(&self) -> String {
        format!(
            "{}, {} cores, {:.0} GiB, Linux {}, {}{}",
            self.cpu,
            self.cores,
            self.memory_bytes as f64 / (1u64 << 30) as f64,
            self.kernel,
            self.date,
            self.commit.as_ref().map(|c| format!(", commit {c}")).unwrap_or_default()
        )
    }
}
