//! The real `statehouse` binary as a child process, configured through the environment as
//! in production, so a test can SIGKILL it, SIGSTOP and SIGCONT it, and start it again.

use std::{
    os::unix::process::ExitStatusExt,
    path::PathBuf,
    process::{ExitStatus, Stdio},
};

use sqlx::PgPool;
use statehouse::aws::fault;
use tokio::process::{Child, Command};

use crate::harness::Stack;

/// The URL of the test's own database (the one `#[sqlx::test]` made), on the server of
/// `DATABASE_URL`.
pub fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let db = pool
        .connect_options()
        .get_database()
        .expect("the test database's name")
        .to_owned();
    let server = base.split('?').next().unwrap_or(&base);
    let (server, _) = server.rsplit_once('/').expect("a database URL");
    format!("{server}/{db}")
}

/// What any `statehouse` process needs to work on the stack: the database, the emulator and
/// the shared platform settings that `dev bootstrap` wrote.
pub fn base_env(stack: &Stack, database_url: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = stack
        .platform_env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in [
        ("DATABASE_URL", database_url),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        // The emulator has no limits: the budget's buckets are sized far above any test.
        ("STATEHOUSE_AWS_BUDGET_SHARE", "1"),
        ("STATEHOUSE_AWS_LIMITS", EMULATOR_LIMITS),
    ] {
        env.push((k.to_owned(), v.to_owned()));
    }
    env
}

/// Every bucket of the AWS call budget at a thousand calls a second.
pub const EMULATOR_LIMITS: &str = "ecs-read=1000/1000,ecs-write=1000/1000,ecs-register-task-definition=1000/1000,elb=1000/1000,logs=1000/1000,iam=1000/1000,s3=1000/1000,dynamodb=1000/1000,application-autoscaling=1000/1000,cloudwatch=1000/1000";

/// What a worker process needs: [`base_env`], and quick pacing with `lease_ttl` as the lease.
pub fn worker_env(stack: &Stack, database_url: &str, lease_ttl: &str) -> Vec<(String, String)> {
    let mut env = base_env(stack, database_url);
    for (k, v) in [
        ("STATEHOUSE_WORKER_LISTEN", "127.0.0.1:0"),
        ("STATEHOUSE_LEASE_TTL", lease_ttl),
        ("STATEHOUSE_RESYNC_INTERVAL", "1h"),
        ("STATEHOUSE_ROLLOUT_WATCH", "2s"),
        ("STATEHOUSE_BACKOFF_BASE", "200ms"),
        ("STATEHOUSE_BACKOFF_MAX", "2s"),
        ("STATEHOUSE_LOG", "info,sqlx=warn"),
    ] {
        env.push((k.to_owned(), v.to_owned()));
    }
    env
}

pub struct Proc {
    child: Child,
    pub name: String,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

impl Proc {
    /// `statehouse <args>` with exactly `env` (nothing inherited but PATH), its output in a
    /// log file. Killed when dropped.
    pub fn spawn(name: &str, args: &[&str], env: &[(String, String)]) -> Self {
        let log = std::env::temp_dir().join(format!(
            "statehouse-{name}-{}.log",
            uuid::Uuid::now_v7().simple()
        ));
        let file = std::fs::File::create(&log).expect("create the process log");
        let child = Command::new(env!("CARGO_BIN_EXE_statehouse"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOSTNAME", name)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("start statehouse");
        Self {
            child,
            name: name.to_owned(),
            log,
        }
    }

    pub fn worker(name: &str, env: &[(String, String)], fault_at: Option<&str>) -> Self {
        let mut env = env.to_vec();
        if let Some(point) = fault_at {
            env.push((fault::ENV.to_owned(), point.to_owned()));
        }
        Self::spawn(name, &["worker"], &env)
    }

    pub fn pid(&self) -> i32 {
        self.child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .expect("a running child")
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        let done = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(done, 0, "cannot signal {}", self.name);
    }

    /// Whether the process is stopped (SIGSTOP), from /proc.
    pub fn is_stopped(&self) -> bool {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // The state follows the command name, which is in parentheses.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
    }

    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait for the child")
    }

    /// SIGKILLs the process and reaps it.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The line the fault point wrote just before its signal, if it fired.
    pub fn fault_line(&self) -> Option<String> {
        self.output()
            .lines()
            .find(|l| l.starts_with(fault::MARKER))
            .map(str::to_owned)
    }

    /// How its worker id begins (`{HOSTNAME}:{pid}:`, see `Worker::new_id`).
    pub fn worker_id_prefix(&self) -> String {
        format!("{}:{}:", self.name, self.pid())
    }
}

impl Drop for Proc {
    /// The process is killed (`kill_on_drop`); its log is kept only for a failing test.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Whether a process ended by SIGKILL.
pub fn killed(status: ExitStatus) -> bool {
    status.signal() == Some(libc::SIGKILL)
}
