//! Opening the state database on either backend, and applying its
//! migrations: sqlite (a file, the default) or PostgreSQL (a `postgres://`
//! URL, shared by several replicas). Both end as one `AnyPool`, so the
//! store's methods are written once.

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, AssertSqlSafe, ConnectOptions, Connection, Executor};

use super::{BUSY_TIMEOUT, StoreError};

/// Embedded migrations of each backend: `migrations/` for sqlite,
/// `migrations/postgres/` for PostgreSQL, with the same version numbers.
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database engine a store talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A local file; one process at a time does a job's work.
    Sqlite,
    /// A server shared by replicas, which share the work of a run.
    Postgres,
}

/// How long a query waits for a PostgreSQL connection. A healthy server
/// hands one out in milliseconds; when it is gone the pool retries the
/// connection until this passes, and a replica whose database is gone
/// must learn it well before long (sqlite's 30 s are for lock waits).
const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// True for a `state.database` value that names a PostgreSQL server.
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// The URL with its password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                // Cannot fail on a URL that has a password (it has a host).
                let _ = u.set_password(Some("redacted"));
            }
            u.to_string()
        }
        Err(_) => "<unparsable database URL>".into(),
    }
}

/// Opens the sqlite file at `path` (created when missing) and migrates it.
pub(super) async fn open_sqlite(path: &Path) -> Result<AnyPool, StoreError> {
    let location = path.display().to_string();
    let open_err = |cause| StoreError::Open {
        database: location.clone(),
        cause,
    };
    // The URL form cannot hold a relative path with `..` faithfully.
    let absolute = std::path::absolute(path).map_err(|cause| StoreError::CreateDir {
        path: path.to_path_buf(),
        cause,
    })?;
    let url = SqliteConnectOptions::new()
        .filename(absolute)
        .create_if_missing(true)
        .to_url_lossy();
    let options = AnyConnectOptions::from_url(&url).map_err(open_err)?;
    let pool = connect_sqlite(options).await.map_err(open_err)?;
    migrate(&SQLITE_MIGRATOR, &pool)
        .await
        .map_err(|cause| StoreError::Migrate {
            database: location.clone(),
            cause,
        })?;
    Ok(pool)
}

/// Connects to the PostgreSQL server at `url` and migrates its database.
pub(super) async fn open_postgres(url: &str) -> Result<AnyPool, StoreError> {
    let location = redact_url(url);
    let open_err = |cause| StoreError::Open {
        database: location.clone(),
        cause,
    };
    let options: AnyConnectOptions = url.parse().map_err(open_err)?;
    // One connection first: the pool would retry a refused connection or a
    // wrong password until its timeout and then say only "timed out".
    options
        .connect()
        .await
        .map_err(open_err)?
        .close()
        .await
        .map_err(open_err)?;
    let pool = AnyPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(POSTGRES_ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(open_err)?;
    // sqlx's PostgreSQL migrator holds an advisory lock while it applies
    // migrations, so replicas starting at once apply each one once.
    migrate(&POSTGRES_MIGRATOR, &pool)
        .await
        .map_err(|cause| StoreError::Migrate {
            database: location,
            cause,
        })?;
    Ok(pool)
}

/// Applies `migrator`. Two processes creating the same new sqlite database
/// race here (sqlx's sqlite migrator takes no lock, so both may try the
/// first `CREATE TABLE`); each migration commits atomically with its record,
/// so a retry sees the winner's work as applied and goes on.
async fn migrate(
    migrator: &sqlx::migrate::Migrator,
    pool: &AnyPool,
) -> Result<(), sqlx::migrate::MigrateError> {
    let mut attempt = 0;
    loop {
        match migrator.run(pool).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 3 => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "Migration raced another process; retrying.");
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Connects, retrying while another connection holds the database locked.
/// Switching a new database to WAL needs an exclusive lock that sqlite's
/// busy timeout does not wait for, so two processes creating the database at
/// once would otherwise see "database is locked" here.
async fn connect_sqlite(options: AnyConnectOptions) -> Result<AnyPool, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(10);
    loop {
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // The busy timeout first, so the others wait for locks.
                    // NORMAL is durable across application crashes in WAL
                    // mode; a power loss may drop the last writes, which a
                    // cache can afford.
                    let pragmas = format!(
                        "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
                         PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                        BUSY_TIMEOUT.as_millis()
                    );
                    // A constant but for the number.
                    conn.execute(AssertSqlSafe(pragmas)).await?;
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await;
        match pool {
            Err(e) if is_busy(&e) && tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "State database is locked; retrying.");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            result => return result,
        }
    }
}

/// True for SQLITE_BUSY and SQLITE_LOCKED, whatever the extended code.
fn is_busy(e: &sqlx::Error) -> bool {
    const SQLITE_BUSY: i32 = 5;
    const SQLITE_LOCKED: i32 = 6;
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    db.code()
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED))
}
