//! The `tollgate` command line (docs/behaviour.md, "Commands").

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::app::{Application, existing_jwt_keys, open_store};
use crate::bootstrap;
use crate::config::{Settings, parse_duration};
use crate::vocab::Role;

#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about = "A multi-tenant AI gateway")]
pub struct Cli {
    /// Configuration file (default: $TOLLGATE_CONFIG, else ./tollgate.toml when present).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run migrations (unless disabled) and serve the proxy and admin listeners (default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Admin helpers.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Master-key helpers.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Serve a small OpenAI-compatible provider (deterministic answers and usage) for
    /// trying the gateway without a provider account; reads no configuration.
    MockUpstream {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Print an admin JWT signed with the configured secret (stdout: the token only).
    Token {
        /// admin, tenant_admin or viewer.
        #[arg(long)]
        role: String,
        /// Tenant name (required for tenant_admin).
        #[arg(long)]
        tenant: Option<String>,
        /// Lifetime, e.g. 15m, 1h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// The token's subject.
        #[arg(long, default_value = "cli")]
        sub: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective values, secrets masked.
    Check {
        /// Configuration file to check (overrides --config).
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-encrypt every stored secret under the newest master key (online).
    RotateMaster,
}

/// Runs the parsed command. `serve` blocks until shutdown.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Config {
        command: ConfigCommand::Check { file },
    } = &command
    {
        let path = file.as_ref().or(cli.config.as_ref());
        let settings = Settings::load(path.map(PathBuf::as_path))?;
        return print_stdout(&format!(
            "# effective Tollgate configuration (secrets masked)\n{}",
            settings.masked_toml()
        ));
    }
    if let Command::MockUpstream { listen } = &command {
        let (addr, server) = crate::mock_upstream::bind(listen)
            .with_context(|| format!("mock-upstream: cannot listen on {listen}"))?;
        crate::telemetry::write_stderr(&format!(
            "mock upstream listening on http://{addr} (POST /v1/chat/completions, \
             GET /v1/models; Ctrl-C stops it)\n"
        ));
        return server.await.context("mock-upstream");
    }
    let settings = Settings::load(cli.config.as_deref())?;
    // Dropped when the command returns: writes what the log still has queued.
    let _log = crate::telemetry::init_logging(&settings.log_format);
    match command {
        Command::Serve => {
            let app = Application::build(settings).await?;
            app.run_until_stopped().await
        }
        Command::Migrate => {
            let store = open_store(&settings, true).await?;
            store.close().await;
            crate::telemetry::write_stderr(&format!(
                "migrations applied ({})\n",
                store.backend().as_str()
            ));
            Ok(())
        }
        Command::Admin {
            command:
                AdminCommand::Token {
                    role,
                    tenant,
                    ttl,
                    sub,
                },
        } => {
            let Some(role) = Role::parse(&role) else {
                bail!("--role must be admin, tenant_admin or viewer");
            };
            match (role, &tenant) {
                (Role::TenantAdmin, None) => bail!("--tenant is required for --role tenant_admin"),
                (Role::Admin | Role::Viewer, Some(_)) => {
                    bail!("--tenant only applies to --role tenant_admin")
                }
                _ => {}
            }
            let ttl = parse_duration(&ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
            let ttl = chrono::Duration::from_std(ttl).context("--ttl is too long")?;
            let keys = existing_jwt_keys(&settings)?;
            // A tenant_admin token is bound to the tenant's id (docs/security.md, "The admin door"), so the tenant
            // is looked up in the database now.
            let tenant_id = match &tenant {
                Some(name) => Some(cli_tenant_id(&settings, name).await?),
                None => None,
            };
            let binding = crate::crypto::Binding {
                tenant_id,
                generation: None,
            };
            let (token, _) = keys
                .issue_bound(&sub, role.as_str(), tenant.as_deref(), binding, ttl)
                .map_err(|e| anyhow::anyhow!("cannot sign the token: {e}"))?;
            print_stdout(&format!("{token}\n"))
        }
        Command::Keys {
            command: KeysCommand::RotateMaster,
        } => {
            let keyring = bootstrap::load_keyring(&settings)?;
            let store = open_store(&settings, false).await?;
            let newest = keyring.newest_key_id().to_string();
            let rewrite = |aad: &[u8], ct: &[u8]| -> Result<Vec<u8>, String> {
                let plain = keyring.decrypt(aad, ct).map_err(|e| e.to_string())?;
                Ok(keyring.encrypt(aad, &plain))
            };
            let count = store
                .reencrypt_all(&rewrite)
                .await
                .context("rotation failed; nothing was changed")?;
            store.close().await;
            crate::telemetry::write_stderr(&format!(
                "re-encrypted {count} stored secrets under master key '{newest}'\n"
            ));
            Ok(())
        }
        Command::Config { .. } | Command::MockUpstream { .. } => Ok(()),
    }
}

/// A command's result on stdout: a failed write (a closed pipe) is the command's error, not
/// a panic (`println!` panics).
fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

/// The id of the tenant named `name` (or with that id).
async fn cli_tenant_id(settings: &Settings, name: &str) -> anyhow::Result<uuid::Uuid> {
    let store = open_store(settings, false).await?;
    let found = store
        .get_tenant(&crate::store::Lookup::parse(name))
        .await
        .context("cannot look up --tenant in the database")?;
    store.close().await;
    found
        .map(|t| t.id)
        .ok_or_else(|| anyhow::anyhow!("--tenant: tenant '{name}' does not exist"))
}
