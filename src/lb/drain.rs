//! Graceful shutdown of client connections, at no cost per poll.
//!
//! hyper-util's `GracefulShutdown` has every connection poll one shared `watch`, whose
//! waiter list sits behind a mutex, each time the connection is polled: several times
//! per request, contended by both workers. Here each connection gets its own oneshot
//! (polling it is an atomic load); the registry's mutex is taken once when a connection
//! opens and once when it ends.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::sync::{oneshot, Notify};

/// The open client connections of one listener, each with its stop signal.
#[derive(Default)]
pub(crate) struct Connections {
    /// Connections still open, by number, with their stop signal until it is sent.
    open: Mutex<HashMap<u64, Option<oneshot::Sender<()>>>>,
    /// Numbers connections, so each can remove its own signal when it ends.
    next_id: AtomicU64,
    /// Woken whenever a connection ends, for [`Connections::drain`].
    ended: Notify,
}

impl Connections {
    /// Runs `conn` until it ends; on [`Connections::drain`] it is asked to finish its
    /// current request and close (`graceful` is hyper's `graceful_shutdown`).
    pub(crate) fn watch<C, G>(self: Arc<Self>, conn: C, graceful: G) -> Watched<C, G>
    where
        C: Future,
        G: FnOnce(Pin<&mut C>),
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, stop) = oneshot::channel();
        self.lock().insert(id, Some(tx));
        Watched {
            conn,
            stop,
            graceful: Some(graceful),
            id,
            connections: Some(self),
        }
    }

    /// Asks every open connection to finish and waits until all have ended.
    pub(crate) async fn drain(&self) {
        for stop in self.lock().values_mut() {
            if let Some(stop) = stop.take() {
                let _ = stop.send(());
            }
        }
        loop {
            // Created before the check, so an end between the two is not missed.
            let ended = self.ended.notified();
            if self.lock().is_empty() {
                return;
            }
            ended.await;
        }
    }

    #[cfg(test)]
    /// How many connections are open.
    pub(crate) fn count(&self) -> usize {
        self.lock().len()
    }

    fn ended(&self, id: u64) {
        self.lock().remove(&id);
        self.ended.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Option<oneshot::Sender<()>>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A stand-in connection: once asked to finish, it ends at once when idle, or when
    /// `request` resolves when a request is in flight.
    struct Conn {
        asked: bool,
        request: Option<oneshot::Receiver<()>>,
    }

    impl Future for Conn {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if !self.asked {
                return Poll::Pending;
            }
            match self.request.as_mut() {
                Some(rx) => Pin::new(rx).poll(cx).map(|_| ()),
                None => Poll::Ready(()),
            }
        }
    }

    #[tokio::test]
    async fn drain_closes_idle_connections_and_waits_for_busy_ones() {
        let conns = Arc::new(Connections::default());
        let (finish, request) = oneshot::channel();
        for request in [None, Some(request)] {
            let conn = Conn {
                asked: false,
                request,
            };
            let watched = conns.clone().watch(conn, |c| c.get_mut().asked = true);
            tokio::spawn(watched);
        }
        while conns.count() < 2 {
            tokio::task::yield_now().await;
        }
        let draining = tokio::spawn({
            let conns = conns.clone();
            async move { conns.drain().await }
        });
        let idle_closed = async {
            while conns.count() > 1 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), idle_closed)
            .await
            .expect("the idle connection closes at once");
        // The busy connection holds the drain until its request ends.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!draining.is_finished());
        assert_eq!(conns.count(), 1);
        finish.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), draining)
            .await
            .expect("drain ends once the last connection does")
            .unwrap();
        assert_eq!(conns.count(), 0);
    }
}

pin_project! {
    /// A client connection that [`Connections::drain`] can ask to finish. A struct
    /// rather than an `async fn`, which would hold the (large) connection future twice.
    pub struct Watched<C, G> {
        #[pin]
        conn: C,
        stop: oneshot::Receiver<()>,
        // Taken when the stop signal comes.
        graceful: Option<G>,
        id: u64,
        // Taken when the connection ends, to leave the registry once.
        connections: Option<Arc<Connections>>,
    }

    impl<C, G> PinnedDrop for Watched<C, G> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(connections) = this.connections.take() {
                connections.ended(*this.id);
            }
        }
    }
}

impl<C, G> Future for Watched<C, G>
where
    C: Future,
    G: FnOnce(Pin<&mut C>),
{
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        if this.graceful.is_some() && Pin::new(&mut *this.stop).poll(cx).is_ready() {
            if let Some(graceful) = this.graceful.take() {
                graceful(this.conn.as_mut());
            }
        }
        let out = ready!(this.conn.poll(cx));
        if let Some(connections) = this.connections.take() {
            connections.ended(*this.id);
        }
        Poll::Ready(out)
    }
}
