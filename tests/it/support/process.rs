//! The real `tollgate` binary as a subprocess, for tests about the binary itself (CLI,
//! start-up, process logs).
//!
//! - [`Env`] is the complete environment of a run: nothing is inherited from the test
//!   process (`env_clear`), the working directory is a temp dir (so no stray
//!   `./tollgate.toml` is read) and `NO_COLOR=1` keeps the text log free of ANSI codes.
//! - [`Env::run`] runs a one-shot command to completion, capturing stdout and stderr.
//! - [`Env::serve`] starts `tollgate serve`, waits for the "Tollgate listening" log line
//!   and parses the bound addresses from it. The returned [`Server`] captures stdout and
//!   stderr in full; [`Server::stop`] sends SIGTERM and waits. Dropping a `Server` (a
//!   failed assertion, a panic) kills the process, so no test leaves one running.
//! - [`call`] is a minimal admin-API client for such a server.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate::config::Settings;

use crate::support::ADMIN_PASSWORD;

pub const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

/// How long a one-shot command, a start-up or a graceful stop may take.
const DEADLINE: Duration = Duration::from_secs(60);

/// The environment of a `tollgate` subprocess.
#[derive(Clone, Debug)]
pub struct Env {
    pub cwd: PathBuf,
    pub vars: BTreeMap<String, String>,
}

/// What a finished one-shot command printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// stdout and stderr, for assertions and failure messages.
    pub fn all(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        )
    }
}

impl Env {
    /// Only `NO_COLOR=1`; runs in `cwd`.
    pub fn new(cwd: &Path) -> Env {
        Env {
            cwd: cwd.to_path_buf(),
            vars: BTreeMap::new(),
        }
        .set("NO_COLOR", "1")
    }

    /// The environment of a node sharing an in-process app's data directory and database,
    /// listening on loopback port 0, with the harness's bootstrap password and its master
    /// key (when it has one).
    pub fn for_settings(settings: &Settings) -> Env {
        let mut env = Env::new(&settings.data_dir)
            .set("TOLLGATE_DATA_DIR", settings.data_dir.display().to_string())
            .set("TOLLGATE_DATABASE_URL", settings.database_url())
            .set("TOLLGATE_ADMIN_LISTEN", "127.0.0.1:0")
            .set("TOLLGATE_PROXY_LISTEN", "127.0.0.1:0")
            .set("TOLLGATE_PROXY_WORKERS", "1")
            .set("TOLLGATE_DRAIN_TIMEOUT", "1s")
            .set("TOLLGATE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            // Its own usage spool (one process per spool): the in-process app may still run.
            .set(
                "TOLLGATE_USAGE_SPOOL_DIR",
                settings
                    .data_dir
                    .join(format!("spool-{}", uuid::Uuid::new_v4().simple()))
                    .display()
                    .to_string(),
            );
        if let Some(key) = &settings.master_key {
            env = env.set("TOLLGATE_MASTER_KEY", key.expose().clone());
        }
        env
    }

    pub fn set(mut self, key: &str, value: impl Into<String>) -> Env {
        self.vars.insert(key.to_string(), value.into());
        self
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(&self.cwd)
            .env_clear()
            .envs(&self.vars)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs `tollgate <args>` to completion (killed after the deadline). Blocks: inside a
    /// test whose in-process app must keep running, use [`Env::run_async`].
    pub fn run(&self, args: &[&str]) -> Output {
        let child = self.command(args).spawn().expect("spawn tollgate");
        let (status, stdout, stderr) = wait_for(child, DEADLINE, &format!("tollgate {args:?}"));
        Output {
            status,
            stdout,
            stderr,
        }
    }

    /// [`Env::run`] on a blocking thread, so the test's runtime keeps serving.
    pub async fn run_async(&self, args: &[&str]) -> Output {
        let env = self.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        actix_web::rt::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            env.run(&args)
        })
        .await
        .expect("tollgate subprocess thread")
    }

    /// Starts `tollgate serve` and waits until it logs "Tollgate listening".
    pub fn serve(&self) -> Server {
        let mut child = Guard(Some(
            self.command(&["serve"]).spawn().expect("spawn tollgate"),
        ));
        let log = Log::default();
        let (lines_tx, lines) = mpsc::channel();
        let readers = log.capture(child.get(), Some(lines_tx));
        let started = Instant::now();
        let listening = loop {
            match lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) if line.contains("Tollgate listening") => break line,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("tollgate serve exited before listening:\n{}", log.text())
                }
            }
            if let Some(status) = child.get().try_wait().expect("try_wait") {
                // Let the readers drain what it printed before failing.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "tollgate serve exited ({status}) before listening:\n{}",
                    log.text()
                );
            }
            assert!(
                started.elapsed() < DEADLINE,
                "tollgate serve did not listen within {DEADLINE:?}:\n{}",
                log.text()
            );
        };
        let addr = |field: &str| {
            let addr = log_field(&listening, field)
                .unwrap_or_else(|| panic!("no {field} in the listening line: {listening}"));
            format!("http://{addr}")
        };
        Server {
            admin: addr("admin_addr"),
            proxy: addr("proxy_addr"),
            child,
            log,
            readers,
            stalled: None,
        }
    }
}

impl Env {
    /// Starts `tollgate serve`, waits for "Tollgate listening", then closes the read ends
    /// of its stdout and stderr: from then on every write of the process to them fails
    /// (EPIPE). The returned [`Server`]'s output is what it printed up to that line.
    pub fn serve_then_close_output(&self) -> Server {
        self.serve_then_stop_reading(true)
    }

    /// Like [`Env::serve_then_close_output`], but the pipes stay open and are never read
    /// again: once they are full, every write of the process to them blocks.
    pub fn serve_then_stall_output(&self) -> Server {
        self.serve_then_stop_reading(false)
    }

    fn serve_then_stop_reading(&self, close: bool) -> Server {
        let mut child = Guard(Some(
            self.command(&["serve"]).spawn().expect("spawn tollgate"),
        ));
        let stdout = child.get().stdout.take().expect("stdout piped");
        let stderr = child.get().stderr.take().expect("stderr piped");
        let log = Log::default();
        let (lines_tx, lines) = mpsc::channel();
        // Reads stderr up to the listening line, then hands the pipe back.
        let reader = {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut pipe = BufReader::new(stderr);
                let mut line = String::new();
                loop {
                    line.clear();
                    match pipe.read_line(&mut line) {
                        Ok(0) | Err(_) => return pipe.into_inner(),
                        Ok(_) => {}
                    }
                    log.inner
                        .lock()
                        .expect("log lock")
                        .interleaved
                        .push_str(&line);
                    let listening = line.contains("Tollgate listening");
                    let _ = lines_tx.send(strip_ansi(&line));
                    if listening {
                        return pipe.into_inner();
                    }
                }
            })
        };
        let started = Instant::now();
        let listening = loop {
            match lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) if line.contains("Tollgate listening") => break line,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("tollgate serve exited before listening:\n{}", log.text())
                }
            }
            assert!(
                started.elapsed() < DEADLINE,
                "tollgate serve did not listen within {DEADLINE:?}:\n{}",
                log.text()
            );
        };
        let stderr = reader.join().expect("stderr reader");
        let held = if close { None } else { Some((stdout, stderr)) };
        let addr = |field: &str| {
            let addr = log_field(&listening, field)
                .unwrap_or_else(|| panic!("no {field} in the listening line: {listening}"));
            format!("http://{addr}")
        };
        Server {
            admin: addr("admin_addr"),
            proxy: addr("proxy_addr"),
            child,
            log,
            readers: Vec::new(),
            stalled: held,
        }
    }
}

/// Which signals a process catches (the `SigCgt` mask of `/proc/<pid>/status`), or `None`
/// when it is gone.
pub fn caught_signals(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mask = status.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
    u64::from_str_radix(mask.trim(), 16).ok()
}

/// A running `tollgate serve`.
pub struct Server {
    pub admin: String,
    pub proxy: String,
    child: Guard,
    log: Log,
    readers: Vec<JoinHandle<()>>,
    /// stdout and stderr kept open but not read (a stalled log reader).
    stalled: Option<(ChildStdout, ChildStderr)>,
}

impl Server {
    /// The process id (to read `/proc/<pid>/status`).
    pub fn pid(&mut self) -> u32 {
        self.child.get().id()
    }

    /// Everything printed so far (stdout and stderr, interleaved).
    pub fn output(&self) -> String {
        self.log.text()
    }

    /// SIGTERM, then waits for the exit; returns the exit status and everything the process
    /// printed on stdout and stderr.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let pid = self.child.get().id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.get().try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "tollgate did not stop within {DEADLINE:?} of SIGTERM:\n{}",
                self.log.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.child.0 = None;
        for r in std::mem::take(&mut self.readers) {
            let _ = r.join();
        }
        (status, self.log.text())
    }

    /// [`Server::stop`] for a server from [`Env::serve_then_stall_output`], with the number
    /// of bytes then waiting in its stdout and stderr pipes (a full pipe holds 64 KiB).
    pub async fn stop_stalled(mut self) -> (ExitStatus, String, [usize; 2]) {
        let (mut stdout, mut stderr) = self.stalled.take().expect("stalled pipes");
        let (status, output) = self.stop_async().await;
        let mut left = [0; 2];
        for (i, pipe) in [&mut stdout as &mut dyn Read, &mut stderr]
            .into_iter()
            .enumerate()
        {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            left[i] = buf.len();
        }
        (status, output, left)
    }

    /// [`Server::stop`] on a blocking thread.
    pub async fn stop_async(self) -> (ExitStatus, String) {
        actix_web::rt::task::spawn_blocking(move || self.stop())
            .await
            .expect("stop thread")
    }
}

/// Kills the child (if still owned) when dropped: no test leaves a process behind.
struct Guard(Option<Child>);

impl Guard {
    fn get(&mut self) -> &mut Child {
        self.0.as_mut().expect("child")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// stdout and stderr of a child, kept apart and also interleaved in arrival order.
#[derive(Clone, Default)]
struct Log {
    inner: Arc<Mutex<LogInner>>,
}

#[derive(Default)]
struct LogInner {
    streams: [String; 2],
    interleaved: String,
}

impl Log {
    /// Starts one reader thread per pipe; each line is also sent to `lines` when given.
    fn capture(
        &self,
        child: &mut Child,
        lines: Option<mpsc::Sender<String>>,
    ) -> Vec<JoinHandle<()>> {
        let stdout: ChildStdout = child.stdout.take().expect("stdout piped");
        let stderr: ChildStderr = child.stderr.take().expect("stderr piped");
        vec![
            self.reader(0, Box::new(stdout), lines.clone()),
            self.reader(1, Box::new(stderr), lines),
        ]
    }

    fn reader(
        &self,
        index: usize,
        pipe: Box<dyn Read + Send>,
        lines: Option<mpsc::Sender<String>>,
    ) -> JoinHandle<()> {
        let log = self.clone();
        std::thread::spawn(move || {
            let mut pipe = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match pipe.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&buf).into_owned();
                {
                    let mut inner = log.inner.lock().expect("log lock");
                    inner.streams[index].push_str(&line);
                    inner.interleaved.push_str(&line);
                }
                if let Some(tx) = &lines {
                    let _ = tx.send(strip_ansi(&line));
                }
            }
        })
    }

    fn text(&self) -> String {
        self.inner.lock().expect("log lock").interleaved.clone()
    }

    fn streams(&self) -> [String; 2] {
        self.inner.lock().expect("log lock").streams.clone()
    }
}

/// Removes ANSI escape sequences (`ESC [ … letter`), in case colours are on anyway.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of field `name` in a log line: `name=value` (text) or `"name":"value"` (JSON).
pub fn log_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    if let Some(at) = line.find(&format!("\"{name}\":\"")) {
        let start = at + name.len() + 4;
        return line[start..].split('"').next();
    }
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    line[start..].split_whitespace().next()
}

/// One admin-API request to a subprocess server: `(status, JSON body or Null, text)`.
pub async fn call(
    client: &awc::Client,
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, String) {
    let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client.request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    let mut resp = match body {
        Some(b) => req.send_json(&b).await,
        None => req.send().await,
    }
    .expect("request");
    let bytes = resp.body().limit(16 * 1024 * 1024).await.expect("body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (
        resp.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text,
    )
}

/// Runs an outside program to completion (killed after `deadline`) on a blocking thread, so
/// the test's runtime keeps serving it; returns its exit status, stdout and stderr.
pub async fn run_program(mut command: Command, deadline: Duration) -> (ExitStatus, String, String) {
    actix_web::rt::task::spawn_blocking(move || {
        let what = format!("{command:?}");
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        wait_for(child, deadline, &what)
    })
    .await
    .expect("program thread")
}

/// Waits for `child` (stdout and stderr piped) to exit, capturing both; kills it and fails
/// naming `what` after `deadline`.
fn wait_for(child: Child, deadline: Duration, what: &str) -> (ExitStatus, String, String) {
    let mut child = Guard(Some(child));
    let log = Log::default();
    let readers = log.capture(child.get(), None);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.get().try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            started.elapsed() < deadline,
            "{what} did not finish within {deadline:?}:\n{}",
            log.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    child.0 = None;
    for r in readers {
        let _ = r.join();
    }
    let [stdout, stderr] = log.streams();
    (status, stdout, stderr)
}

/// Logs in to a subprocess server; panics unless it answers 200.
pub async fn login(client: &awc::Client, base: &str, username: &str, password: &str) -> String {
    let body = serde_json::json!({"username": username, "password": password});
    let (status, body, text) = call(client, base, "POST", "/auth/login", None, Some(body)).await;
    assert_eq!(status, 200, "login as {username}: {text}");
    body["token"].as_str().expect("token").to_string()
}

pub fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
}
