//! What this machine's `/proc` says about its processes: who runs under a name, and how much
//! CPU time each has used (the cluster's components, the operator's container process and the
//! peers all run on this machine).

use anyhow::{Context as _, Result};

/// Clock ticks per second, the unit of the CPU times in `/proc` (`getconf CLK_TCK`; 100, the
/// kernel's `USER_HZ` on every Linux this runs on, if that fails).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The PIDs of the processes whose `comm` is `name`, compared on the first 15 bytes (the
/// kernel cuts `comm` there: `paddock-operator` is `paddock-operato`).
pub fn pids_named(name: &str) -> Result<Vec<u32>> {
    let want = &name[..name.len().min(15)];
    let mut found = vec![];
    for e in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == want) {
            found.push(pid);
        }
    }
    Ok(found)
}

/// CPU time process `pid` has used, in clock ticks ([`clock_ticks`] per second): user + system,
/// all its threads, plus that of the children it has waited for (`utime` + `stime` + `cutime` +
/// `cstime` of `/proc/<pid>/stat`; proc(5)), so kube-router's short-lived `iptables` and `ipset`
/// runs count as its own.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("process {pid}"))?;
    parse_cpu_ticks(&stat).with_context(|| format!("/proc/{pid}/stat: no utime/stime"))
}

/// `utime` + `stime` + `cutime` + `cstime` (ticks) of one `/proc/<pid>/stat` line: fields 14 to
/// 17, counted after the command name in parentheses (which may hold spaces and parentheses
/// itself). `cutime` and `cstime` are signed in proc(5); a negative one counts 0.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
    let own = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let children: i64 = f.get(13)?.parse::<i64>().ok()? + f.get(14)?.parse::<i64>().ok()?;
    Some(own + children.max(0) as u64)
}

/// The machine's CPU time since boot, in clock ticks summed over all CPUs: `(busy, total)`,
/// busy being all but `idle` and `iowait` (the `cpu` line of `/proc/stat`).
pub fn machine_ticks() -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    parse_machine_ticks(&stat).context("/proc/stat: no cpu line")
}

/// `(busy, total)` ticks of the `cpu` line of a `/proc/stat` text (see [`machine_ticks`]).
pub fn parse_machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    // user nice system idle iowait irq softirq steal (guest times are already in user/nice).
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_of_a_stat_line() {
        // A command name with a space and a parenthesis, as the kernel writes it.
        let stat = "4242 (kube api) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 350 120 30 7 20 0 12 0 100 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(507));
        assert_eq!(parse_cpu_ticks("4242 (short) S 1"), None);
    }

    #[test]
    fn machine_ticks_leave_out_idle_and_iowait() {
        let stat = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n";
        assert_eq!(parse_machine_ticks(stat), Some((161, 1181)));
    }
}
