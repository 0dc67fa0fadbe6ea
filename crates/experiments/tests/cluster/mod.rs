//! A private one-node Slurm cluster (Debian's slurm-wlm: slurmctld + slurmd, with munge)
//! in a temporary folder, for the Slurm test: its own munge key and socket, its own
//! `slurm.conf` (named by `SLURM_CONF`), ports, state, spool, logs and pid files, so it
//! neither needs nor touches a system installation's configuration. The daemons run in
//! the foreground as children of the test and are stopped through their pid files when
//! the cluster is dropped.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running cluster; dropping it stops the daemons.
pub struct Cluster {
    /// Its folder (config, state, logs).
    pub dir: PathBuf,
    /// `slurm.conf`.
    pub conf: PathBuf,
    children: Vec<(String, Child, PathBuf)>,
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn program(name: &str) -> PathBuf {
    which(name).unwrap_or_else(|| {
        panic!(
            "{name} is not installed: the Slurm test needs Debian's slurm-wlm and munge \
             (apt-get install -y slurm-wlm munge) and root"
        )
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

fn output(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn log_tail(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

impl Cluster {
    /// Starts munged, slurmctld and slurmd under `dir` and waits (≤ 60 s) until the node
    /// is idle.
    pub fn start(dir: &Path) -> Cluster {
        let uid = output(Command::new("id").arg("-u"));
        assert_eq!(uid.trim(), "0", "the Slurm test runs the daemons as root");
        let dir = dir.to_path_buf();
        for sub in ["munge", "state", "spool", "log"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let host = output(Command::new("hostname").arg("-s"))
            .trim()
            .to_string();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let munge = dir.join("munge");
        let key = munge.join("munge.key");
        let mut bytes = vec![0u8; 1024];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .unwrap();
        std::fs::write(&key, &bytes).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        std::fs::set_permissions(&munge, std::fs::Permissions::from_mode(0o700)).unwrap();
        let socket = munge.join("munge.socket");
        let conf = dir.join("slurm.conf");
        let (ctld_port, slurmd_port) = (free_port(), free_port());
        let d = dir.display();
        let text = format!(
            "ClusterName=specregtest\n\
             SlurmctldHost={host}\n\
             SlurmctldPort={ctld_port}\n\
             SlurmdPort={slurmd_port}\n\
             SlurmUser=root\n\
             SlurmdUser=root\n\
             AuthType=auth/munge\n\
             AuthInfo=socket={socket}\n\
             CredType=cred/munge\n\
             ProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\n\
             JobAcctGatherType=jobacct_gather/none\n\
             SelectType=select/cons_tres\n\
             SelectTypeParameters=CR_CPU\n\
             ReturnToService=2\n\
             MpiDefault=none\n\
             MailProg=/bin/true\n\
             StateSaveLocation={d}/state\n\
             SlurmdSpoolDir={d}/spool\n\
             SlurmctldPidFile={d}/slurmctld.pid\n\
             SlurmdPidFile={d}/slurmd.pid\n\
             SlurmctldLogFile={d}/log/slurmctld.log\n\
             SlurmdLogFile={d}/log/slurmd.log\n\
             NodeName={host} CPUs={cpus} RealMemory=4000 State=UNKNOWN\n\
             PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
            socket = socket.display(),
        );
        std::fs::write(&conf, text).unwrap();
        let mut cluster = Cluster {
            dir: dir.clone(),
            conf: conf.clone(),
            children: Vec::new(),
        };
        let munged_pid = munge.join("munged.pid");
        cluster.spawn(
            "munged",
            Command::new(program("munged")).args([
                "--foreground".into(),
                "--force".into(),
                format!("--key-file={}", key.display()),
                format!("--socket={}", socket.display()),
                format!("--pid-file={}", munged_pid.display()),
                format!("--log-file={}", munge.join("munged.log").display()),
                format!("--seed-file={}", munge.join("munged.seed").display()),
            ]),
            munged_pid,
        );
        cluster.wait_for("the munge socket", Duration::from_secs(20), |c| {
            let _ = c;
            socket.exists()
        });
        cluster.spawn(
            "slurmctld",
            Command::new(program("slurmctld"))
                .args(["-D", "-f"])
                .arg(&conf),
            dir.join("slurmctld.pid"),
        );
        cluster.spawn(
            "slurmd",
            Command::new(program("slurmd"))
                .args(["-D", "-f"])
                .arg(&conf),
            dir.join("slurmd.pid"),
        );
        cluster.wait_for("the node to be idle", Duration::from_secs(60), |c| {
            c.command("sinfo")
                .args(["-h", "-o", "%T"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle")
        });
        cluster
    }

    fn spawn(&mut self, name: &str, cmd: &mut Command, pid_file: PathBuf) {
        let log = self.dir.join("log").join(format!("{name}.stderr"));
        let child = cmd
            .env("SLURM_CONF", &self.conf)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.children.push((name.to_string(), child, pid_file));
    }

    fn wait_for(&mut self, what: &str, limit: Duration, mut ready: impl FnMut(&Cluster) -> bool) {
        let start = Instant::now();
        while !ready(self) {
            for (name, child, _) in &mut self.children {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "{name} exited ({status}) while waiting for {what}:\n{}",
                        self_logs(&self.dir)
                    );
                }
            }
            assert!(
                start.elapsed() < limit,
                "waited {limit:?} for {what}:\n{}",
                self_logs(&self.dir)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// A Slurm client command (`sbatch`, `squeue`, …) talking to this cluster.
    pub fn command(&self, name: &str) -> Command {
        let mut c = Command::new(program(name));
        c.env("SLURM_CONF", &self.conf);
        c
    }

    /// Waits until no job is pending or running (≤ `limit`).
    pub fn wait_idle(&mut self, limit: Duration) {
        self.wait_for("the jobs to finish", limit, |c| {
            c.command("squeue")
                .args(["-h", "-o", "%i %T"])
                .output()
                .is_ok_and(|o| o.status.success() && o.stdout.iter().all(u8::is_ascii_whitespace))
        });
    }

    /// The daemons' logs, for failure messages.
    pub fn logs(&self) -> String {
        self_logs(&self.dir)
    }
}

fn self_logs(dir: &Path) -> String {
    [
        "log/slurmctld.log",
        "log/slurmd.log",
        "log/slurmctld.stderr",
        "munge/munged.log",
    ]
    .iter()
    .map(|f| format!("--- {f}\n{}", log_tail(&dir.join(f))))
    .collect::<Vec<_>>()
    .join("\n")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Stop in reverse order, by the pid each daemon wrote (falling back to the child's
        // own pid), then reap the children.
        for (_, child, pid_file) in self.children.iter_mut().rev() {
            let pid = std::fs::read_to_string(&*pid_file)
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok())
                .unwrap_or(child.id());
            let _ = Command::new("kill").arg(pid.to_string()).status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
