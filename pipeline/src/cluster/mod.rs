//! Running as several processes on timely's cluster mode: the cluster's shape (processes,
//! this process's id, the hostfile naming every process's address) and the timely config it
//! makes, plus the small dataflows through which processes share what a single process
//! shares in memory ([`gather`], [`gossip`], [`names`]).

pub mod gather;
pub mod gossip;
pub mod names;

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `--processes`, `--process-id`, `--hostfile`: the same on `run` and `replay`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterArgs {
    /// Processes in the cluster [default: 1].
    #[arg(long, short = 'n', env = "JOURNEYFLOW_PROCESSES")]
    pub processes: Option<usize>,
    /// This process's id, 0 to processes - 1 [default: 0].
    #[arg(long, short = 'p', env = "JOURNEYFLOW_PROCESS_ID")]
    pub process_id: Option<usize>,
    /// A file with one `host:port` per process, in process-id order (`#` starts a comment).
    #[arg(long, env = "JOURNEYFLOW_HOSTFILE")]
    pub hostfile: Option<PathBuf>,
}

/// `[cluster]` of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// `processes = 2`.
    pub processes: Option<usize>,
    /// `process_id = 0`.
    pub process_id: Option<usize>,
    /// `hostfile = "hosts.txt"`.
    pub hostfile: Option<PathBuf>,
}

/// The shape of the cluster this process belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// Processes in the cluster.
    pub processes: usize,
    /// This process's id.
    pub process: usize,
    /// Worker threads of each process.
    pub workers: usize,
    /// Every process's `host:port` (empty for a single process).
    pub addresses: Vec<String>,
}

/// Worker threads per process when none are configured: one per core this process may use
/// (its CPU affinity and cgroup quota count), as a user on any machine expects.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Cluster {
    /// Whether a worker of this process holds `user`'s state: the dataflows' operators
    /// exchange users by their key (its low 64 bits) over every worker of the cluster, in
    /// process order.
    pub fn owns(&self, user: journeyflow_types::Key) -> bool {
        ((user.0 as u64) % self.peers() as u64) as usize / self.workers == self.process
    }

    /// A single process of `workers` threads.
    pub fn single(workers: usize) -> Cluster {
        Cluster { processes: 1, process: 0, workers: workers.max(1), addresses: Vec::new() }
    }

    /// The cluster the flags describe over the config file's section; every inconsistency is
    /// an error that names the flag or the hostfile line.
    pub fn resolve(args: &ClusterArgs, file: ClusterSection, workers: usize) -> anyhow::Result<Cluster> {
        let processes = args.processes.or(file.processes).unwrap_or(1);
        let process = args.process_id.or(file.process_id).unwrap_or(0);
        let hostfile = args.hostfile.clone().or(file.hostfile);
        if processes == 0 {
            anyhow::bail!("--processes: must be at least 1");
        }
        if process >= processes {
            anyhow::bail!("--process-id {process}: must be below --processes {processes}");
        }
        if processes == 1 {
            return Ok(Cluster::single(workers));
        }
        let Some(hostfile) = hostfile else {
            anyhow::bail!("--processes {processes} needs --hostfile naming every process's host:port");
        };
        let addresses = read_hostfile(&hostfile)?;
        if addresses.len() < processes {
            anyhow::bail!(
                "{}: {} address(es) for --processes {processes}: one host:port line per process is needed",
                hostfile.display(),
                addresses.len()
            );
        }
        Ok(Cluster { processes, process, workers: workers.max(1), addresses: addresses[..processes].to_vec() })
    }

    /// Workers over all processes.
    pub fn peers(&self) -> usize {
        self.processes * self.workers
    }

    /// The global index of this process's first worker (timely numbers a process's workers
    /// consecutively).
    pub fn first_worker(&self) -> usize {
        self.process * self.workers
    }

    /// Whether this is a cluster of more than one process.
    pub fn is_distributed(&self) -> bool {
        self.processes > 1
    }

    /// The timely configuration: threads in one process, or the cluster over TCP.
    pub fn timely(&self) -> timely::Config {
        if !self.is_distributed() {
            return timely::Config::process(self.workers);
        }
        timely::Config {
            communication: timely::CommunicationConfig::Cluster {
                threads: self.workers,
                process: self.process,
                addresses: self.addresses.clone(),
                report: false,
                zerocopy: false,
            },
            worker: timely::WorkerConfig::default(),
        }
    }
}

/// One `host:port` per non-blank line; `#` starts a comment.
pub fn read_hostfile(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let mut addresses = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let port = line.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>()));
        match port {
            Some((host, Ok(_))) if !host.is_empty() => addresses.push(line.to_string()),
            _ => anyhow::bail!("{} line {}: expected host:port, found {line:?}", path.display(), n + 1),
        }
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use journeyflow_types::Key;

    /// Each user is owned by the process of the worker timely's exchange sends its key to:
    /// three and four workers (timely takes a remainder, or a mask for a power of two), seen
    /// as processes of `per` workers each.
    #[test]
    fn a_user_is_owned_by_the_process_the_exchange_sends_it_to() {
        use timely::dataflow::channels::pact::Exchange;
        use timely::dataflow::operators::generic::operator::Operator;
        use timely::dataflow::operators::vec::ToStream;
        for (peers, per) in [(3, 1), (4, 2)] {
            let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let into = received.clone();
            timely::execute(timely::Config::process(peers), move |worker| {
                let (index, into) = (worker.index(), into.clone());
                worker.dataflow::<u64, _, _>(|scope| {
                    let keys = (0..200u32).filter(move |_| index == 0).map(|i| Key::of(&format!("user-{i}")));
                    keys.to_stream(scope).sink(Exchange::new(|k: &Key| k.0 as u64), "Owners", move |(input, _)| {
                        input.for_each(|_, data| into.lock().unwrap().extend(data.drain(..).map(|k| (k, index))));
                    });
                });
            })
            .unwrap();
            let received = received.lock().unwrap();
            assert_eq!(received.len(), 200);
            for (key, worker) in received.iter() {
                for process in 0..peers / per {
                    let cluster = Cluster { processes: peers / per, process, workers: per, addresses: Vec::new() };
                    assert_eq!(cluster.owns(*key), worker / per == process, "{key:?} went to worker {worker}");
                }
            }
        }
    }

    #[test]
    fn a_hostfile_gives_the_addresses_and_mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, "# the cluster\n127.0.0.1:2101\n\n127.0.0.1:2102  # second\n").unwrap();
        let args = ClusterArgs { processes: Some(2), process_id: Some(1), hostfile: Some(path.clone()) };
        let c = Cluster::resolve(&args, ClusterSection::default(), 3).unwrap();
        assert_eq!(c.addresses, ["127.0.0.1:2101", "127.0.0.1:2102"]);
        assert_eq!((c.peers(), c.first_worker(), c.is_distributed()), (6, 3, true));
        let three = ClusterArgs { processes: Some(3), ..args.clone() };
        let err = Cluster::resolve(&three, ClusterSection::default(), 1).unwrap_err().to_string();
        assert!(err.contains("2 address(es)") && err.contains("hosts"), "{err}");
        let beyond = ClusterArgs { process_id: Some(2), ..args.clone() };
        assert!(Cluster::resolve(&beyond, ClusterSection::default(), 1)
            .unwrap_err()
            .to_string()
            .contains("--process-id"));
        std::fs::write(&path, "127.0.0.1:2101\nlocalhost\n").unwrap();
        let err = Cluster::resolve(&args, ClusterSection::default(), 1).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("localhost"), "{err}");
        let section = ClusterSection { processes: Some(2), process_id: None, hostfile: None };
        let err = Cluster::resolve(&ClusterArgs::default(), section, 1).unwrap_err().to_string();
        assert!(err.contains("--hostfile"), "{err}");
    }
}
