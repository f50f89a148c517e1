//! A TCP proxy a test can cut and restore, to make a real PostgreSQL or Redis "unreachable"
//! for one server without disturbing anyone else using it.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

pub struct Proxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    /// Relays still copying bytes: [`Proxy::cut`] waits for them to end.
    open: Arc<AtomicUsize>,
    generation: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards every connection to `target` (host:port).
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let cut = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicUsize::new(0));
        let (generation, _) = watch::channel(0u64);
        let task = tokio::spawn({
            let cut = cut.clone();
            let open = open.clone();
            let generation = generation.clone();
            async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else { continue };
                    if cut.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let target = target.clone();
                    let mut cut_signal = generation.subscribe();
                    let relay = Relay::open(&open);
                    tokio::spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(&target).await else { return };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut_signal.changed() => {}
                        }
                        drop((inbound, outbound, relay));
                    });
                }
            }
        });
        Self { addr, cut, open, generation, task }
    }

    /// Closes every open connection and refuses new ones until [`Proxy::restore`]. Returns once
    /// every relay has closed both its sockets, so the next request already finds the service gone.
    pub async fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
        let closed = async {
            while self.open.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), closed).await.expect("the proxy's relays closed");
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counts one relay as open for as long as it lives.
struct Relay(Arc<AtomicUsize>);

impl Relay {
    fn open(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count.clone())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `host:port` of a URL like `redis://127.0.0.1:6379/0` or `postgres://u@127.0.0.1:5432/db`.
pub fn host_port(url: &str) -> String {
    let parsed = url::Url::parse(url).expect("service url");
    let port = parsed.port().unwrap_or(match parsed.scheme() {
        "redis" => 6379,
        _ => 5432,
    });
    format!("{}:{port}", parsed.host_str().expect("host"))
}

/// `url` with its host and port replaced by the proxy's.
pub fn through(url: &str, proxy: &Proxy) -> String {
    let mut parsed = url::Url::parse(url).expect("service url");
    parsed.set_host(Some(&proxy.addr.ip().to_string())).expect("host");
    parsed.set_port(Some(proxy.addr.port())).expect("port");
    parsed.to_string()
}
