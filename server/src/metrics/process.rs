//! The process's standard series (`process_*`), read from `/proc/self` at
//! each scrape: the names every Prometheus client library exports, so
//! stock dashboards and alert rules work. Linux only (the server's
//! platform); elsewhere nothing is exported.
//!
//! Read with the standard library, nix (the process's CPU clock) and
//! rlimit, all already in the tree: the `procfs` crate would add a
//! dependency for three files.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Registered at the registry's root (no `kefu_` prefix).
#[derive(Debug)]
pub struct Process;

/// What one scrape read; a file that could not be read leaves its fields out.
#[derive(Debug, Default, PartialEq)]
pub struct Sample {
    pub cpu_seconds: Option<f64>,
    pub threads: Option<i64>,
    pub virtual_bytes: Option<i64>,
    pub resident_bytes: Option<i64>,
    pub open_fds: Option<i64>,
    pub max_fds: Option<i64>,
}

impl Sample {
    pub fn read() -> Sample {
        let mut sample = Sample::default();
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            sample.apply_stat(&stat);
        }
        // Every thread's user and system time, in nanoseconds (the stat
        // file's ticks would need sysconf's clock rate).
        if let Ok(cpu) = nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID) {
            sample.cpu_seconds = Some(cpu.tv_sec() as f64 + cpu.tv_nsec() as f64 / 1e9);
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            sample.resident_bytes = resident_bytes(&status);
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            // Includes the directory's own descriptor, as the Go and
            // Python clients count it.
            sample.open_fds = i64::try_from(entries.count()).ok();
        }
        if let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
            sample.max_fds = Some(i64::try_from(soft).unwrap_or(i64::MAX));
        }
        sample
    }

    /// `/proc/self/stat` (proc(5)): the fields after the command name,
    /// which is in parentheses and may hold spaces.
    fn apply_stat(&mut self, stat: &str) {
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Field 3 of proc(5) (the state) is fields[0].
        let field = |number: usize| fields.get(number - 3).and_then(|f| f.parse::<u64>().ok());
        self.threads = field(20).and_then(|n| i64::try_from(n).ok());
        self.virtual_bytes = field(23).and_then(|n| i64::try_from(n).ok());
    }
}

/// `VmRSS:   12345 kB` of `/proc/self/status`.
fn resident_bytes(status: &str) -> Option<i64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sample = Sample::read();
        if let Some(seconds) = sample.cpu_seconds {
            let counter = ConstCounter::new(seconds);
            counter.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                counter.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                sample.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                sample.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                sample.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors (soft limit)",
                sample.max_fds,
            ),
            ("process_threads", "Number of OS threads", sample.threads),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                gauge.encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    gauge.metric_type(),
                )?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with spaces and a parenthesis, as proc(5) allows.
        let stat = "4242 (kefu (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    250 50 0 0 20 0 7 0 123456 104857600 2560 18446744073709551615";
        let mut sample = Sample::default();
        sample.apply_stat(stat);
        assert_eq!(sample.threads, Some(7));
        assert_eq!(sample.virtual_bytes, Some(104_857_600));
        let mut garbled = Sample::default();
        garbled.apply_stat("no parenthesis here");
        assert_eq!(garbled, Sample::default());
    }

    #[test]
    fn resident_memory_is_read_in_kib() {
        let status = "Name:\tkefu\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t7\n";
        assert_eq!(resident_bytes(status), Some(2_097_152));
        assert_eq!(resident_bytes("Name:\tkefu\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_whole() {
        let sample = Sample::read();
        assert!(sample.resident_bytes.is_some_and(|b| b > 0), "{sample:?}");
        assert!(sample.open_fds.is_some_and(|n| n > 0), "{sample:?}");
        assert!(sample.threads.is_some_and(|n| n > 0), "{sample:?}");
        assert!(sample.cpu_seconds.is_some(), "{sample:?}");
        assert!(sample.max_fds.is_some(), "{sample:?}");
    }
}
