//! A private AWS emulator per test: moto's server on a free loopback port, stopped on drop.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

pub struct Moto {
    pub endpoint: String,
    child: Child,
}

impl Moto {
    /// `running_tasks` is how many tasks each ECS service pretends to run
    /// (`MOTO_ECS_SERVICE_RUNNING`); 0 makes deployments never finish.
    pub async fn start(running_tasks: u32) -> Self {
        let binary = std::env::var("STATEHOUSE_MOTO_SERVER").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/moto_server").to_owned()
        });
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ECS_SERVICE_RUNNING", running_tasks.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary} (run `make test`, which installs it): {e}")
            });
        let endpoint = format!("http://127.0.0.1:{port}");
        let moto = Self { endpoint, child };
        for _ in 0..150 {
            if reqwest::get(format!("{}/moto-api/", moto.endpoint))
                .await
                .is_ok()
            {
                return moto;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the AWS emulator did not start on port {port}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
