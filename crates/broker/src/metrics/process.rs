//! Process metrics from `/proc/self` (Linux), as Prometheus client libraries export them.
//! Anything that cannot be read is left out of the scrape rather than reported as zero.

/// Linux reports CPU times in clock ticks of `sysconf(_SC_CLK_TCK)`, 100 on every mainstream
/// architecture; reading it would need libc in this crate.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
/// Upper bound on descriptors counted per scrape, so a runaway process cannot make a scrape slow.
const OPEN_FDS_COUNTED_MAX: usize = 1_000_000;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub resident_memory_bytes: Option<f64>,
    pub virtual_memory_bytes: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub start_time_unix_seconds: Option<f64>,
}

impl ProcessStats {
    pub fn read() -> Self {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let fields = stat.as_deref().map(stat_fields).unwrap_or_default();
        let field = |n: usize| fields.get(n).and_then(|f| f.parse::<f64>().ok());
        let cpu_seconds = match (field(STAT_UTIME), field(STAT_STIME)) {
            (Some(user), Some(system)) => Some((user + system) / CLOCK_TICKS_PER_SECOND),
            _ => None,
        };
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time_seconds(&s));
        let start_time_unix_seconds = match (boot_time, field(STAT_STARTTIME)) {
            (Some(boot), Some(ticks)) => Some(boot + ticks / CLOCK_TICKS_PER_SECOND),
            _ => None,
        };
        let status = std::fs::read_to_string("/proc/self/status").ok();
        Self {
            cpu_seconds,
            resident_memory_bytes: status
                .as_deref()
                .and_then(|s| status_kib(s, "VmRSS:"))
                .map(|kib| kib * 1024.0),
            virtual_memory_bytes: field(STAT_VSIZE),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|dir| dir.take(OPEN_FDS_COUNTED_MAX).count() as f64),
            max_fds: std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|s| max_open_files(&s)),
            start_time_unix_seconds,
        }
    }
}

// Field numbers of /proc/self/stat counted from 0 after the command name (see `stat_fields`):
// proc(5) numbers them from 1 with pid and comm first, so field N of proc(5) is N - 3 here.
const STAT_UTIME: usize = 14 - 3;
const STAT_STIME: usize = 15 - 3;
const STAT_STARTTIME: usize = 22 - 3;
const STAT_VSIZE: usize = 23 - 3;

/// The fields after `(comm)`: the command name may hold spaces and parentheses, so split after
/// its last `)`.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default()
}

fn boot_time_seconds(proc_stat: &str) -> Option<f64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn status_kib(status: &str, key: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The soft limit of "Max open files" ("unlimited" is left out).
fn max_open_files(limits: &str) -> Option<f64> {
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_a_command_name_with_spaces_and_parentheses() {
        let stat = "42 (my (odd) cmd) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 1000 123456789 512";
        let fields = stat_fields(stat);
        assert_eq!(fields[STAT_UTIME], "250");
        assert_eq!(fields[STAT_STIME], "50");
        assert_eq!(fields[STAT_STARTTIME], "1000");
        assert_eq!(fields[STAT_VSIZE], "123456789");
    }

    #[test]
    fn limits_status_and_boot_time_parse() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 4096                 files\n";
        assert_eq!(max_open_files(limits), Some(1024.0));
        assert_eq!(
            status_kib("Name:\tx\nVmRSS:\t  2048 kB\n", "VmRSS:"),
            Some(2048.0)
        );
        assert_eq!(
            boot_time_seconds("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000.0)
        );
    }

    #[test]
    fn this_process_reads_sane_values() {
        let stats = ProcessStats::read();
        assert!(stats.resident_memory_bytes.unwrap() > 0.0);
        assert!(stats.open_fds.unwrap() >= 1.0);
        assert!(stats.start_time_unix_seconds.unwrap() > 1_500_000_000.0);
    }
}
