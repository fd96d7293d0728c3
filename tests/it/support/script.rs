//! An outside program (the OpenAI SDK script, the browser story) run to its end without
//! blocking the test's runtime: the app and the mocks keep answering it meanwhile.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the child on every path out (a failed assertion included).
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `command` (stdin closed, output captured) for at most `timeout`; fails naming
/// `what` with its output when it fails or takes longer. Returns its stdout.
pub async fn run_to_end(mut command: Command, what: &str, timeout: Duration) -> String {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let mut child = ChildGuard(child);
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = String::new();
            let _ = pipe.read_to_string(&mut out);
            out
        })
    };
    let stdout = drain(Box::new(child.0.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.0.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.0.kill();
            let _ = child.0.wait();
            let err = stderr.join().unwrap_or_default();
            panic!("{what} took longer than {timeout:?}; stderr:\n{err}");
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    assert!(
        status.success(),
        "{what} failed ({status}):\nstdout: {out}\nstderr: {err}"
    );
    out
}
