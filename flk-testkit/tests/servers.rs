//! The testkit's own tests: real servers start, answer, die, and come back on the same port.

use std::time::{Duration, Instant};

use flk_testkit::{PgServer, RedisServer};

/// A dead server must refuse quickly, not hang: kill delivers resets, not silence.
const REFUSAL_BOUND: Duration = Duration::from_secs(3);

#[tokio::test]
async fn postgres_starts_answers_and_survives_a_crash_with_its_data() {
    let mut pg = PgServer::start().await.expect("start postgres");
    assert_ne!(pg.port(), 5432, "must never be the shared instance's port");
    assert!(pg.is_running());
    let port = pg.port();

    let client = pg.connect().await.expect("connect");
    client
        .batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (41), (1);")
        .await
        .expect("write");

    pg.kill().expect("kill");
    assert!(!pg.is_running());
    let started = Instant::now();
    let err = client
        .simple_query("SELECT 1")
        .await
        .expect_err("query after kill");
    assert!(
        started.elapsed() < REFUSAL_BOUND,
        "took {:?}: {err}",
        started.elapsed()
    );
    assert!(
        pg.connect().await.is_err(),
        "a killed server accepted a connection"
    );

    pg.restart().await.expect("restart after kill");
    assert_eq!(pg.port(), port, "restart must keep the port");
    let client = pg.connect().await.expect("reconnect");
    let row = client
        .query_one("SELECT sum(v)::int FROM t", &[])
        .await
        .expect("read after restart");
    assert_eq!(row.get::<_, i32>(0), 42, "committed rows survive a crash");
}

#[tokio::test]
async fn postgres_graceful_stop_and_restart() {
    let mut pg = PgServer::start().await.expect("start postgres");
    let url = pg.url();
    assert!(url.starts_with("postgres://postgres@127.0.0.1:"), "{url}");
    assert!(
        pg.connection_string()
            .contains(&format!("port={}", pg.port()))
    );
    assert!(pg.data_dir().join("PG_VERSION").is_file());
    pg.stop().expect("stop");
    assert!(pg.connect().await.is_err());
    pg.restart().await.expect("restart after stop");
    pg.restart().await.expect("restart while running");
    let client = pg.connect().await.expect("connect");
    client.simple_query("SELECT 1").await.expect("query");
    assert!(
        pg.log().contains("ready to accept connections"),
        "{}",
        pg.log()
    );
}

#[tokio::test]
async fn dropping_a_server_kills_it_and_removes_its_directory() {
    let pg = PgServer::start().await.expect("start postgres");
    let redis = RedisServer::start().await.expect("start redis");
    let dir = pg.data_dir().to_path_buf();
    let (pg_port, redis_port) = (pg.port(), redis.port());
    drop(pg);
    drop(redis);
    assert!(!dir.exists(), "{} left behind", dir.display());
    for port in [pg_port, redis_port] {
        let refused = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
        assert!(refused.is_err(), "port {port} still accepts connections");
    }
}

async fn redis_connection(url: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await
}

#[tokio::test]
async fn redis_starts_answers_dies_and_restarts_on_the_same_port() {
    let mut server = RedisServer::start().await.expect("start redis");
    assert_ne!(
        server.port(),
        6379,
        "must never be the shared instance's port"
    );
    let port = server.port();
    let mut conn = redis_connection(&server.url()).await.expect("connect");
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut conn)
        .await
        .expect("set");
    let v: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut conn)
        .await
        .expect("get");
    assert_eq!(v, "v");

    server.kill().expect("kill");
    assert!(!server.is_running());
    let started = Instant::now();
    let err = redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .expect_err("ping after kill");
    assert!(
        started.elapsed() < REFUSAL_BOUND,
        "took {:?}: {err}",
        started.elapsed()
    );

    server.restart().await.expect("restart");
    assert_eq!(server.port(), port);
    let mut conn = redis_connection(&server.url()).await.expect("reconnect");
    let pong: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .expect("ping");
    assert_eq!(pong, "PONG");
    let gone: Option<String> = redis::cmd("GET")
        .arg("k")
        .query_async(&mut conn)
        .await
        .expect("get");
    assert_eq!(gone, None, "the test configuration persists nothing");
}

#[tokio::test]
async fn servers_started_together_get_distinct_ports() {
    let (a, b) = tokio::join!(RedisServer::start(), RedisServer::start());
    let (a, b) = (a.expect("start a"), b.expect("start b"));
    assert_ne!(a.port(), b.port());
}

/// System V shared memory ids currently allocated (`/proc/sysvipc/shm`, column `shmid`).
fn sysv_segments() -> Vec<String> {
    let table = std::fs::read_to_string("/proc/sysvipc/shm").expect("read /proc/sysvipc/shm");
    table
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}

/// The segment id a running cluster recorded in its `postmaster.pid` (line 7: key, id).
fn cluster_segment(pg: &PgServer) -> String {
    let pidfile = std::fs::read_to_string(pg.data_dir().join("postmaster.pid")).expect("pidfile");
    pidfile
        .lines()
        .nth(6)
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("shm id")
        .to_owned()
}

/// Neither a crash nor a drop may leak shared memory: test runs must not fill the machine.
#[tokio::test]
async fn killed_and_dropped_servers_leave_no_shared_memory() {
    let mut crashed = PgServer::start().await.expect("start postgres");
    let crashed_segment = cluster_segment(&crashed);
    let dropped = PgServer::start().await.expect("start postgres");
    let dropped_segment = cluster_segment(&dropped);
    assert!(sysv_segments().contains(&crashed_segment));

    crashed.kill().expect("kill");
    drop(crashed);
    drop(dropped);
    let left = sysv_segments();
    assert!(
        !left.contains(&crashed_segment),
        "segment of a killed server leaked"
    );
    assert!(
        !left.contains(&dropped_segment),
        "segment of a dropped server leaked"
    );
}
