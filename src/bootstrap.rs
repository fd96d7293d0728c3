//! Start-up chores shared by `serve` and the CLI: the data directory, the generated master
//! key and JWT secret (mode 0600, with a loud warning), the API-key pepper, and the
//! bootstrap admin user.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::config::Settings;
use crate::crypto::{
    ApiKeyHasher, Keyring, Secret, generate_password, generate_pepper, hash_password,
};
use crate::snapshot::API_KEY_PEPPER;
use crate::store::{
    AdminRecord, SharedStore, StoreError, SystemSecretRecord, new_id, now, system_secret_aad,
};

pub const MASTER_KEY_FILE: &str = "master.key";
pub const JWT_SECRET_FILE: &str = "jwt.secret";

/// Creates the data directory (mode 0700) when missing (an existing one is tightened by
/// [`tighten_permissions`]).
pub fn ensure_data_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
        set_mode(dir, 0o700)?;
    }
    Ok(())
}

/// The database file of a `sqlite://path/to/file.db` URL (None: not SQLite, or in memory).
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// For `sqlite://path/to/file.db`, makes sure the file's directory exists (a new one
/// owner-only) and creates a missing database file with mode 0600 before SQLite opens it:
/// SQLite gives its `-wal` and `-shm` files the database file's mode.
pub fn ensure_sqlite_parent(url: &str) -> anyhow::Result<()> {
    let Some(path) = sqlite_path(url) else {
        return Ok(());
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.exists()
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create database directory {}", parent.display()))?;
        set_mode(parent, 0o700)?;
    }
    if !path.exists() {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(_) => {}
            // Another process created it meanwhile: tightened after opening.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot create the database file {}", path.display())
                });
            }
        }
    }
    Ok(())
}

/// Makes what the gateway keeps on disk owner-only even when it existed before (created by
/// an older version, a copy, a restore): the data directory 0700; the generated secrets,
/// the SQLite database and its `-wal`/`-shm` files 0600. Runs after the store is open, when
/// the WAL files exist. A path that cannot be changed (another owner) is a warning.
pub fn tighten_permissions(settings: &Settings) {
    if settings.data_dir.is_dir() {
        tighten(&settings.data_dir, 0o700);
        for name in [MASTER_KEY_FILE, JWT_SECRET_FILE] {
            tighten(&settings.data_dir.join(name), 0o600);
        }
    }
    if let Some(db) = sqlite_path(&settings.database_url()) {
        let mut wal = db.clone().into_os_string();
        wal.push("-wal");
        let mut shm = db.clone().into_os_string();
        shm.push("-shm");
        for path in [db, PathBuf::from(wal), PathBuf::from(shm)] {
            tighten(&path, 0o600);
        }
    }
}

/// Sets `mode` on `path` when it exists with any other permission bits.
#[cfg(unix)]
pub fn tighten(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let current = meta.permissions().mode() & 0o777;
    if current == mode {
        return;
    }
    match set_mode(path, mode) {
        Ok(()) => tracing::info!(
            path = %path.display(),
            from = %format!("{current:o}"),
            to = %format!("{mode:o}"),
            "tightened permissions to owner-only"
        ),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "cannot make this owner-only")
        }
    }
}

#[cfg(not(unix))]
pub fn tighten(_: &Path, _: u32) {}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set permissions on {}", path.display()))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> anyhow::Result<()> {
    Ok(())
}

/// Reads a generated secret file, or creates it (mode 0600) with `generate()`'s content.
fn read_or_generate(
    path: &PathBuf,
    what: &str,
    generate: impl FnOnce() -> String,
) -> anyhow::Result<String> {
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {what} file {}", path.display()))?;
        return Ok(text.trim().to_string());
    }
    let content = generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {what} file {}", path.display()))?;
    file.write_all(content.as_bytes())?;
    file.write_all(b"\n")?;
    tracing::warn!(
        file = %path.display(),
        "generated a new {what} (mode 0600). Fine for trying Tollgate; in production supply your own and keep it out of the data directory"
    );
    Ok(content)
}

/// The master keyring: `master_key` from the configuration, else `<data_dir>/master.key`.
pub fn load_keyring(settings: &Settings) -> anyhow::Result<Keyring> {
    let spec = match &settings.master_key {
        Some(k) => Secret::new(k.expose().clone()),
        None => {
            ensure_data_dir(&settings.data_dir)?;
            let path = settings.data_dir.join(MASTER_KEY_FILE);
            Secret::new(read_or_generate(&path, "master key", || {
                Keyring::generate().1
            })?)
        }
    };
    Keyring::parse(spec.expose()).map_err(|e| anyhow::anyhow!("invalid master key: {e}"))
}

/// The HS256 secret: `admin_jwt_secret`, else `<data_dir>/jwt.secret`.
pub fn load_jwt_secret(settings: &Settings) -> anyhow::Result<Secret<String>> {
    if let Some(s) = &settings.admin_jwt_secret {
        if s.expose().len() < 32 {
            bail!("TOLLGATE_ADMIN_JWT_SECRET must be at least 32 bytes");
        }
        return Ok(s.clone());
    }
    ensure_data_dir(&settings.data_dir)?;
    let path = settings.data_dir.join(JWT_SECRET_FILE);
    let secret = read_or_generate(&path, "JWT secret", || {
        generate_password().into_inner() + &generate_password().into_inner()
    })?;
    if secret.len() < 32 {
        bail!("{} must hold at least 32 bytes", path.display());
    }
    Ok(Secret::new(secret))
}

/// The HS256 secret a running server uses, for `tollgate admin token`: `admin_jwt_secret`,
/// else an existing `<data_dir>/jwt.secret`. Never generates one: a token signed with a
/// secret the server does not have would be refused, so a missing secret is an error that
/// says where it looked (docs/behaviour.md, "Admin tokens from the command line").
pub fn existing_jwt_secret(settings: &Settings) -> anyhow::Result<Secret<String>> {
    if settings.admin_jwt_secret.is_some() {
        return load_jwt_secret(settings);
    }
    let path = settings.data_dir.join(JWT_SECRET_FILE);
    if !path.exists() {
        let shown = std::path::absolute(&path).unwrap_or(path);
        bail!(
            "no admin JWT secret: TOLLGATE_ADMIN_JWT_SECRET (admin_jwt_secret) is not set and \
             {} does not exist. Run this command with the server's configuration (the same \
             TOLLGATE_DATA_DIR or working directory, or the same TOLLGATE_ADMIN_JWT_SECRET)",
            shown.display()
        );
    }
    load_jwt_secret(settings)
}

/// The configured public key for externally issued admin JWTs: inline PEM or a path.
pub fn load_jwt_public_key(settings: &Settings) -> anyhow::Result<Option<String>> {
    match &settings.admin_jwt_public_key {
        None => Ok(None),
        Some(v) if v.contains("-----BEGIN") => Ok(Some(v.clone())),
        Some(path) => std::fs::read_to_string(path)
            .map(Some)
            .with_context(|| format!("cannot read admin_jwt_public_key file {path}")),
    }
}

/// The API-key pepper: stored encrypted in the database so every node shares it; created
/// by the first node that starts.
pub async fn load_pepper(store: &SharedStore, keyring: &Keyring) -> anyhow::Result<ApiKeyHasher> {
    let aad = system_secret_aad(API_KEY_PEPPER);
    let stored = match store.get_system_secret(API_KEY_PEPPER).await? {
        Some(s) => s,
        None => {
            let record = SystemSecretRecord {
                name: API_KEY_PEPPER.into(),
                value: keyring.encrypt(&aad, &generate_pepper()),
                created_at: now(),
            };
            store.insert_system_secret(&record).await?
        }
    };
    let pepper = keyring.decrypt(&aad, &stored.value).map_err(|e| {
        anyhow::anyhow!(
            "the stored API-key pepper cannot be decrypted: {e}. Configure the master key it was encrypted with (TOLLGATE_MASTER_KEY accepts several, 'new:…,old:…')"
        )
    })?;
    Ok(ApiKeyHasher::new(&pepper))
}

/// Creates the admin user `admin` when no admin exists. The password comes from
/// `TOLLGATE_ADMIN_PASSWORD`, else it is generated and printed once on stderr (never
/// through the log pipeline).
pub async fn ensure_bootstrap_admin(
    store: &SharedStore,
    settings: &Settings,
) -> anyhow::Result<()> {
    if store.count_admins().await? > 0 {
        return Ok(());
    }
    let (password, generated) = match &settings.admin_password {
        Some(p) => (p.clone(), false),
        None => (generate_password(), true),
    };
    if password.expose().chars().count() < 8 {
        bail!("TOLLGATE_ADMIN_PASSWORD must be at least 8 characters");
    }
    let hash = {
        let p = password.clone();
        tokio::task::spawn_blocking(move || hash_password(p.expose()))
            .await
            .context("password hashing was interrupted")?
            .map_err(|e| anyhow::anyhow!("cannot hash the bootstrap password: {e}"))?
    };
    let now = now();
    let inserted = store
        .insert_admin(&AdminRecord {
            id: new_id(),
            name: "admin".into(),
            password_hash: hash,
            role: "admin".into(),
            tenant_id: None,
            tags: sqlx::types::Json(vec![]),
            created_at: now,
            updated_at: now,
            token_generation: 0,
        })
        .await;
    match inserted {
        // Another node sharing the database created it first.
        Err(StoreError::Conflict(_)) => return Ok(()),
        other => other?,
    }
    if generated {
        // Not `eprintln!`, which panics on a closed stderr: a failed write is counted.
        crate::telemetry::write_stderr(&format!(
            "\n==== Tollgate bootstrap admin ====\n  username: admin\n  password: {}\nThis password is shown once. Set TOLLGATE_ADMIN_PASSWORD to choose it.\n=================================\n\n",
            password.expose()
        ));
    } else {
        tracing::info!(
            "created the bootstrap admin user 'admin' with the password from TOLLGATE_ADMIN_PASSWORD"
        );
    }
    Ok(())
}
