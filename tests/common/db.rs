//! A results database, read (and for set-ups written) from a test. Each call
//! opens its own connection, with a busy timeout so that reads made while a
//! coordinator writes wait instead of failing.
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{Connection, FromRow};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Db {
    path: PathBuf,
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

impl Db {
    /// An existing database.
    pub fn open(path: impl Into<PathBuf>) -> Db {
        Db { path: path.into() }
    }

    /// A new, empty SQLite database (another program's, say).
    pub fn create_empty(path: &Path) -> Db {
        let db = Db::open(path);
        block_on(async { db.connect(true).await.close().await.expect("close") });
        db
    }

    /// A new database with sweep's schema, made the way `sweep` makes it (its migrations).
    pub fn create_with_schema(path: &Path) -> Db {
        let db = Db::open(path);
        block_on(async {
            let mut c = db.connect(true).await;
            let migrator = sqlx::migrate::Migrator::new(super::repo_path("migrations"))
                .await
                .expect("read migrations/");
            migrator.run(&mut c).await.expect("run the migrations");
            c.close().await.expect("close");
        });
        db
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn connect(&self, create: bool) -> SqliteConnection {
        let opts = SqliteConnectOptions::new()
            .filename(&self.path)
            .create_if_missing(create)
            .busy_timeout(Duration::from_secs(30));
        SqliteConnection::connect_with(&opts)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.path.display()))
    }

    /// Every row of `sql`, each as a tuple (or any `FromRow`).
    #[track_caller]
    pub fn query<T>(&self, sql: &str) -> Vec<T>
    where
        T: for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
    {
        self.query_with(sql, &[])
    }

    /// Every row of `sql` with `?` bound to `binds` in order.
    #[track_caller]
    pub fn query_with<T>(&self, sql: &str, binds: &[&str]) -> Vec<T>
    where
        T: for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
    {
        block_on(async {
            let mut c = self.connect(false).await;
            let mut q = sqlx::query_as::<_, T>(sql);
            for b in binds {
                q = q.bind(*b);
            }
            let rows = q
                .fetch_all(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            c.close().await.expect("close");
            rows
        })
    }

    /// The one value of the first row of `sql`.
    #[track_caller]
    pub fn scalar<T>(&self, sql: &str) -> T
    where
        (T,): for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
    {
        self.scalar_with(sql, &[])
    }

    #[track_caller]
    pub fn scalar_with<T>(&self, sql: &str, binds: &[&str]) -> T
    where
        (T,): for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
    {
        let row = self.query_with::<(T,)>(sql, binds).into_iter().next();
        row.unwrap_or_else(|| panic!("{sql}: no row")).0
    }

    /// `SELECT COUNT(*) …` and the like.
    #[track_caller]
    pub fn count(&self, sql: &str) -> i64 {
        self.scalar(sql)
    }

    /// The rows of `sql` as they come, or its error.
    pub fn try_rows(&self, sql: &str) -> Result<Vec<SqliteRow>, sqlx::Error> {
        block_on(async {
            let mut c = self.connect(false).await;
            let rows = sqlx::query(sql).fetch_all(&mut c).await;
            c.close().await.expect("close");
            rows
        })
    }

    #[track_caller]
    pub fn execute(&self, sql: &str) {
        block_on(async {
            let mut c = self.connect(false).await;
            sqlx::query(sql)
                .execute(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            c.close().await.expect("close");
        })
    }

    /// `PRAGMA integrity_check` says ok.
    pub fn integrity_ok(&self) -> bool {
        self.scalar::<String>("PRAGMA integrity_check") == "ok"
    }
}
