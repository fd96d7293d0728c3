//! Wiring: the store, the keyring, the snapshot, both HTTP listeners and the background
//! change poller. `Application::build` binds the listeners (port 0 allowed) so tests can
//! spawn the real thing and ask for the bound addresses.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix::{Addr, AsyncContext};
use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

use crate::actors::metrics::{MetricsAggregator, Shutdown, ShutdownReport, UsageSink};
use crate::admin::body::{BodyLimit, path_config, query_config};
use crate::admin::{self, ApiDoc};
use crate::bootstrap;
use crate::config::Settings;
use crate::crypto::{JwtKeys, JwtSettings};

use crate::proxy::Recorder;
use crate::shutdown::{DrainDeadline, fires_after, server_drain};
use crate::snapshot::{Snapshot, SnapshotHandle};
use crate::state::AppState;
use crate::store::{self, SharedStore};
use crate::telemetry::analytics::AnalyticsLog;
use crate::telemetry::otel::Otel;
use crate::telemetry::otlp_logs::OtlpLogExporter;
use crate::telemetry::prometheus::PromMetrics;

/// How often each node checks the stored configuration version (other nodes' writes,
/// CLI changes); changes reach every node within a second (docs/behaviour.md,
/// "Configuration and the snapshot").
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How often the aggregator writes its rows (docs/behaviour.md, "Admin resources": visible in
/// `/usage` within 10 s).
const USAGE_FLUSH_INTERVAL: Duration = Duration::from_secs(2);
/// How long the final usage write may retry at shutdown (a database that is briefly gone).
const USAGE_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);
/// How long the stop waits for the database's connections to close.
const STORE_CLOSE_DEADLINE: Duration = Duration::from_secs(2);
/// How long the stop waits for the analytics log's last write (a stalled sink blocks it).
const ANALYTICS_FLUSH_DEADLINE: Duration = Duration::from_secs(2);

pub struct Application {
    admin_addr: SocketAddr,
    proxy_addr: SocketAddr,
    admin_server: Server,
    proxy_server: Server,
    state: web::Data<AppState>,
    analytics: AnalyticsLog,
    aggregator: Addr<MetricsAggregator>,
    usage: UsageSink,
    otel: Option<Otel>,
    /// Installed before the listeners exist, so a SIGTERM right after "Tollgate listening"
    /// is a graceful stop, not the default (killing) action.
    signals: Option<StopSignals>,
}

/// Opens the store named by the settings and applies migrations when asked.
pub async fn open_store(settings: &Settings, migrate: bool) -> anyhow::Result<SharedStore> {
    let url = settings.database_url();
    bootstrap::ensure_sqlite_parent(&url)?;
    let store = store::connect(&url).await.with_context(|| {
        format!(
            "cannot open the database at {}",
            crate::config::mask_url_password(&url)
        )
    })?;
    if migrate {
        store.migrate().await.context("database migration failed")?;
    }
    // After opening (and migrating): the SQLite `-wal`/`-shm` files exist only now.
    bootstrap::tighten_permissions(settings);
    Ok(store)
}

/// The admin JWT keys from the settings (generated secret file when none is configured).
pub fn jwt_keys(settings: &Settings) -> anyhow::Result<JwtKeys> {
    jwt_keys_with(settings, bootstrap::load_jwt_secret(settings)?)
}

/// The keys of a server that has already started (its secret is read, never generated),
/// for `tollgate admin token`.
pub fn existing_jwt_keys(settings: &Settings) -> anyhow::Result<JwtKeys> {
    jwt_keys_with(settings, bootstrap::existing_jwt_secret(settings)?)
}

fn jwt_keys_with(
    settings: &Settings,
    hs256_secret: crate::crypto::Secret<String>,
) -> anyhow::Result<JwtKeys> {
    JwtKeys::new(&JwtSettings {
        hs256_secret,
        public_key_pem: bootstrap::load_jwt_public_key(settings)?,
        issuer: settings.admin_jwt_issuer.clone(),
        audience: settings.admin_jwt_audience.clone(),
    })
    .map_err(|e| anyhow::anyhow!("invalid admin JWT configuration: {e}"))
}

fn node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &id[..8])
}

/// The limits engine: counters in Redis when `redis_url` is set (shared by every node),
/// else in this process (docs/behaviour.md, "Limits and budgets").
async fn limiter(settings: &Settings) -> anyhow::Result<crate::limits::Limiter> {
    use crate::limits::{Limiter, RedisStore};
    let Some(url) = settings.redis_url.as_ref() else {
        return Ok(Limiter::in_process());
    };
    let store = RedisStore::connect(url.expose()).await.map_err(|e| {
        anyhow::anyhow!("cannot connect to Redis (redis_url / TOLLGATE_REDIS_URL): {e}")
    })?;
    tracing::info!("limit counters are in Redis, shared by every node");
    Ok(Limiter::new(Arc::new(store)))
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let settings = Arc::new(settings);
        // Keys first: generating them creates the data directory with mode 0700.
        let keyring = Arc::new(bootstrap::load_keyring(&settings)?);
        let jwt = Arc::new(jwt_keys(&settings)?);
        let store = open_store(&settings, settings.migrate_on_start).await?;
        Self::assemble(settings, keyring, jwt, store).await
    }

    /// `build` on a store opened (and migrated) by the caller: the storage-fault tests
    /// hand in a store whose connections they can make fail.
    pub async fn build_with_store(
        settings: Settings,
        store: SharedStore,
    ) -> anyhow::Result<Application> {
        let settings = Arc::new(settings);
        let keyring = Arc::new(bootstrap::load_keyring(&settings)?);
        let jwt = Arc::new(jwt_keys(&settings)?);
        Self::assemble(settings, keyring, jwt, store).await
    }

    async fn assemble(
        settings: Arc<Settings>,
        keyring: Arc<crate::crypto::Keyring>,
        jwt: Arc<JwtKeys>,
        store: SharedStore,
    ) -> anyhow::Result<Application> {
        // Before the listeners exist (docs/architecture.md, "The process log").
        let signals = StopSignals::install();
        let api_keys = Arc::new(bootstrap::load_pepper(&store, &keyring).await?);
        // Before the first snapshot, so the bootstrap admin's tokens verify at once.
        bootstrap::ensure_bootstrap_admin(&store, &settings).await?;
        let data = store
            .load_config()
            .await
            .context("cannot load the configuration")?;
        // System secrets (the pepper, above) that do not decrypt stop the start; a credential
        // that does not decrypt only disables its services, logged here once.
        let compiled = Snapshot::compile(data, &keyring);
        compiled.log_credential_changes(&Snapshot::empty());
        let snapshot = SnapshotHandle::new(compiled);

        let spool_dir = settings.usage_spool_dir();
        let (usage, usage_events) = UsageSink::open(&spool_dir)
            .with_context(|| format!("cannot open the usage spool {}", spool_dir.display()))?;
        let node_id = node_id();
        let analytics = if settings.analytics_log == "otlp" {
            let exporter = OtlpLogExporter::from_settings(&settings, Some(&node_id))?;
            AnalyticsLog::otlp(exporter).context("cannot start the analytics log's OTLP export")?
        } else {
            AnalyticsLog::open(&settings.analytics_log).with_context(|| {
                format!("cannot open the analytics log {}", settings.analytics_log)
            })?
        };
        let state = web::Data::new(AppState {
            settings: settings.clone(),
            store,
            keyring,
            jwt,
            api_keys,
            snapshot,
            node_id,
            started_at: chrono::Utc::now(),
            analytics: analytics.clone(),
            usage_spool: usage.spool().clone(),
            login_guard: Default::default(),
            trusted_proxies: settings.trusted_proxies()?,
            drain_deadline: DrainDeadline::default(),
            response_budget: crate::budget::ResponseBudget::new(
                settings.max_buffered_upstream_bytes,
            ),
            limits: Arc::new(limiter(&settings).await?),
        });

        let admin_listener = TcpListener::bind(&settings.admin_listen).with_context(|| {
            format!(
                "cannot bind the admin listener on {}",
                settings.admin_listen
            )
        })?;
        let proxy_listener = TcpListener::bind(&settings.proxy_listen).with_context(|| {
            format!(
                "cannot bind the proxy listener on {}",
                settings.proxy_listen
            )
        })?;
        let admin_addr = admin_listener.local_addr()?;
        let proxy_addr = proxy_listener.local_addr()?;
        let drain = settings.drain_timeout();

        // The aggregator's address exists before it starts: `/metrics` on the admin
        // listener asks it for the exposition.
        let aggregator_context = actix::Context::<MetricsAggregator>::new();
        let scrape = settings.metrics.then(|| admin::metrics::Scrape {
            aggregator: aggregator_context.address(),
            token: settings.metrics_token.clone(),
        });

        let admin_state = state.clone();
        let body_limit = BodyLimit(settings.admin_max_body_size);
        let mut admin_server = HttpServer::new(move || {
            let app = App::new()
                .into_utoipa_app()
                .openapi(ApiDoc::openapi())
                .app_data(admin_state.clone())
                .app_data(body_limit)
                .app_data(query_config())
                .app_data(path_config());
            let (app, api) = admin::register(app).split_for_parts();
            let api = admin::openapi::complete(api);
            let declared = admin::openapi::DeclaredMethods::of(&api);
            app.wrap(tracing_actix_web::TracingLogger::<admin::span::AdminRootSpan>::new())
                .service(
                    SwaggerUi::new("/docs/{_:.*}")
                        .url("/openapi.json", api)
                        // Swagger UI would otherwise send the document to an outside
                        // validator service whenever it is opened by another host name.
                        .config(utoipa_swagger_ui::Config::default().validator_url("none")),
                )
                .route(
                    "/docs",
                    web::get().to(|| async {
                        HttpResponse::Found()
                            .insert_header(("Location", "/docs/"))
                            .finish()
                    }),
                )
                .configure(admin::ui::configure)
                .configure(|cfg| {
                    if let Some(scrape) = &scrape {
                        admin::metrics::configure(cfg, scrape.clone());
                    }
                })
                // 405 with `Allow` for a declared path, 404 otherwise.
                .default_service(web::to(move |req: actix_web::HttpRequest| {
                    let response = admin::openapi::unrouted(&req, &declared);
                    async move { response }
                }))
        })
        .listen(admin_listener)?
        // Signals are handled by `run_until_stopped`: actix's own handler stops the whole
        // System 300 ms after the first server (the idle admin one) is done, which would
        // cut the proxy's streams short of the drain time.
        .disable_signals()
        .shutdown_timeout(server_drain(drain).as_secs());
        if settings.admin_workers > 0 {
            admin_server = admin_server.workers(settings.admin_workers);
        }
        let admin_server = admin_server.run();

        let proxy_state = state.clone();
        let analytics_for_shutdown = analytics.clone();
        let allow_private = settings.allow_private_upstreams;
        let otel = Otel::from_settings_for_node(&settings, Some(&state.node_id))?;
        if let Some(otel) = &otel {
            otel.watch_analytics(analytics.clone());
            let limits = state.limits.clone();
            otel.watch_limit_rejections(move || {
                crate::limits::Kind::ALL
                    .iter()
                    .map(|k| (k.as_str(), limits.counts().rejections(*k)))
                    .collect()
            });
        }
        let aggregator = MetricsAggregator::new(
            usage.clone(),
            usage_events,
            crate::store::usage_writer(state.store.clone()),
            otel.clone()
                .map(|o| Box::new(o) as Box<dyn crate::actors::metrics::UsageObserver>),
            USAGE_FLUSH_INTERVAL,
        );
        let aggregator = if settings.metrics {
            aggregator.with_prometheus(PromMetrics::new(settings.metrics_max_label_sets))
        } else {
            aggregator
        };
        // On this (the main) thread: it only aggregates and hands batches to the store.
        let aggregator = aggregator_context.run(aggregator);
        let recorder = Recorder {
            analytics,
            usage: Some(usage.clone()),
        };
        let mut proxy_server = HttpServer::new(move || {
            let recorder = recorder.clone();
            App::new()
                .app_data(proxy_state.clone())
                .configure(|cfg| crate::proxy::configure(cfg, recorder, allow_private))
        })
        .listen(proxy_listener)?
        // Streams are many small writes; without this, Nagle holds a frame back until the
        // client's delayed ACK (≈40 ms per stream, measured by bench/run).
        .tcp_nodelay(true)
        // A client that closes its side is gone: its handler is dropped, which cancels
        // the upstream call and records `client_disconnected` (docs/architecture.md,
        // "Timeouts and cancellation"). HTTP clients do not half-close to await an answer.
        .h1_allow_half_closed(false)
        .disable_signals()
        .shutdown_timeout(server_drain(drain).as_secs());
        if settings.proxy_workers > 0 {
            proxy_server = proxy_server.workers(settings.proxy_workers);
        }
        let proxy_server = proxy_server.run();

        tracing::info!(%admin_addr, %proxy_addr, backend = state.store.backend().as_str(), "Tollgate listening");
        Ok(Application {
            admin_addr,
            proxy_addr,
            admin_server,
            proxy_server,
            state,
            analytics: analytics_for_shutdown,
            aggregator,
            usage,
            otel,
            signals,
        })
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }

    /// Stops both listeners (gracefully: in-flight requests finish within the drain time).
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            admin: self.admin_server.handle(),
            proxy: self.proxy_server.handle(),
            drain_deadline: self.state.drain_deadline.clone(),
            deadline_after: fires_after(self.state.settings.drain_timeout()),
        }
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// The proxy's usage sink (tests read its dropped count).
    pub fn usage_sink(&self) -> UsageSink {
        self.usage.clone()
    }

    /// Runs until both servers stop (SIGTERM/SIGINT, or `stop`): the servers stop
    /// accepting and let in-flight requests and streams finish within the drain time;
    /// then the usage rows are written (retrying a while if the database is down), the
    /// telemetry is exported, and the store is closed.
    pub async fn run_until_stopped(mut self) -> anyhow::Result<()> {
        let poller = actix_web::rt::spawn(poll_config_changes(self.state.clone()));
        let signals = self
            .signals
            .take()
            .map(|s| actix_web::rt::spawn(stop_on_signals(s, self.stop_handle())));
        let result = futures::future::try_join(self.admin_server, self.proxy_server).await;
        poller.abort();
        if let Some(signals) = signals {
            signals.abort();
        }
        // Off this thread and bounded: on a stalled sink (a pipe nobody reads) the write
        // blocks, and the stop must go on (docs/architecture.md, "The process log"). A
        // plain thread, not `spawn_blocking`: the runtime's drop would wait for it.
        let analytics = self.analytics.clone();
        let (flushed_tx, flushed) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("tollgate-analytics-flush".into())
            .spawn(move || {
                analytics.flush();
                let _ = flushed_tx.send(());
            });
        let flushed = match spawned {
            Ok(_) => actix_web::rt::time::timeout(ANALYTICS_FLUSH_DEADLINE, flushed)
                .await
                .is_ok(),
            Err(_) => false,
        };
        if !flushed {
            tracing::error!("the analytics log sink is stalled; lines still pending are lost");
        }
        let mut spool_failed = false;
        match self
            .aggregator
            .send(Shutdown {
                deadline: USAGE_SHUTDOWN_DEADLINE,
            })
            .await
        {
            Ok(ShutdownReport {
                lost: 0,
                segments_left: 0,
            }) => tracing::info!("usage written at shutdown"),
            Ok(ShutdownReport {
                lost: 0,
                segments_left,
            }) => tracing::warn!(
                segments_left,
                "the database did not take all usage in time; it stays in the spool and is counted at the next start"
            ),
            Ok(report) => {
                spool_failed = true;
                tracing::error!(
                    lost = report.lost,
                    "usage events were lost before reaching the spool"
                );
            }
            Err(e) => {
                spool_failed = true;
                tracing::error!(error = %e, "usage aggregator gone at shutdown");
            }
        }
        // Limit leases go back to the shared store, so other nodes may use them.
        self.state.limits.shutdown().await;
        if let Some(otel) = &self.otel {
            // The exporters block on HTTP: keep that off the runtime's thread.
            let otel = otel.clone();
            let shutdown = actix_web::rt::task::spawn_blocking(move || otel.shutdown()).await;
            if let Ok(Err(e)) = shutdown {
                tracing::warn!(error = %e, "telemetry shutdown incomplete");
            }
        }
        // Bounded: closing waits for every pooled connection, and one stuck in a statement
        // on a frozen or locked database never comes back.
        if actix_web::rt::time::timeout(STORE_CLOSE_DEADLINE, self.state.store.close())
            .await
            .is_err()
        {
            tracing::warn!("the database did not close its connections in time");
        }
        result.map(|_| ()).context("server error")?;
        if spool_failed {
            anyhow::bail!("usage events were lost: the usage spool failed (see the log)");
        }
        Ok(())
    }
}

#[derive(Clone)]
pub struct StopHandle {
    admin: actix_web::dev::ServerHandle,
    proxy: actix_web::dev::ServerHandle,
    drain_deadline: DrainDeadline,
    /// When a graceful stop fires `drain_deadline` (before the servers' own timeout).
    deadline_after: Duration,
}

impl StopHandle {
    /// A graceful stop lets in-flight work finish within the drain time; shortly before
    /// it runs out the drain deadline fires, so streams still open end with an in-band
    /// `shutdown` error before the servers drop their connections.
    pub async fn stop(&self, graceful: bool) {
        let servers = futures::future::join(self.admin.stop(graceful), self.proxy.stop(graceful));
        if !graceful {
            self.drain_deadline.fire();
            servers.await;
            return;
        }
        let deadline = async {
            actix_web::rt::time::sleep(self.deadline_after).await;
            self.drain_deadline.fire();
            std::future::pending::<()>().await;
        };
        tokio::select! {
            _ = servers => {}
            () = deadline => {}
        }
    }
}

/// The SIGTERM and SIGINT listeners. Creating them replaces the default action (exit) at
/// once; a signal that arrives before `stop_on_signals` polls them is kept, not lost.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Option<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some(StopSignals { term, int }),
            _ => {
                tracing::error!("cannot install signal handlers; stop the process with SIGKILL");
                None
            }
        }
    }
}

/// SIGTERM or SIGINT: a graceful stop (stop accepting, let in-flight requests and streams
/// finish within the drain time); a second signal stops at once.
async fn stop_on_signals(signals: StopSignals, stop: StopHandle) {
    let StopSignals { mut term, mut int } = signals;
    let first = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(
        signal = first,
        "stopping: finishing in-flight requests and streams"
    );
    let graceful = actix_web::rt::spawn({
        let stop = stop.clone();
        async move { stop.stop(true).await }
    });
    let second = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::warn!(signal = second, "second signal: stopping now");
    graceful.abort();
    stop.stop(false).await;
}

/// Picks up configuration written elsewhere (other nodes, the CLI) within `POLL_INTERVAL`.
/// While the database is unreachable the last good snapshot keeps serving.
async fn poll_config_changes(state: web::Data<AppState>) {
    let mut interval = actix_web::rt::time::interval(POLL_INTERVAL);
    let mut failing = false;
    loop {
        interval.tick().await;
        match state
            .snapshot
            .refresh_if_changed(&state.store, &state.keyring)
            .await
        {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("configuration poller recovered");
            }
            Ok(_) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "configuration poller failed; serving the last good snapshot");
            }
            Err(_) => {}
        }
    }
}
