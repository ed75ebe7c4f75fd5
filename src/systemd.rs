//! Readiness notifications to the service manager (systemd's `Type=notify`):
//! `READY=1` once the listeners are bound and serving, `RELOADING=1` … `READY=1`
//! around every reload, `STOPPING=1` when the shutdown begins. They go to the
//! datagram socket `$NOTIFY_SOCKET` names (a path, or `@name` in the abstract
//! namespace); without it nothing is sent. The protocol is sd_notify(3); no
//! library is needed for three fixed messages.
//!
//! The unit's `ExecReload=wssgate ctl reload` is what makes a reload's result
//! reach `systemctl reload`; the notifications tell systemd when the daemon is in
//! a reload, so that `systemctl` waits for it rather than for a signal's delivery.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Where notifications go, when anywhere.
#[derive(Debug, Default)]
pub struct Notifier {
    /// The socket and the manager's address; `None`: not run by a manager.
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// The manager named by `$NOTIFY_SOCKET`, if any. A socket that cannot be
    /// set up is logged and notifications are skipped: the daemon serves anyway.
    pub fn from_env() -> Notifier {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(name) => Notifier::to(&name.to_string_lossy()),
            None => Notifier::default(),
        }
    }

    /// Notifications to the socket `name` (a path, or `@abstract-name`).
    pub fn to(name: &str) -> Notifier {
        let target = (|| {
            let addr = match name.strip_prefix('@') {
                Some(abstract_name) => {
                    use std::os::linux::net::SocketAddrExt;
                    SocketAddr::from_abstract_name(abstract_name.as_bytes())?
                }
                None => SocketAddr::from_pathname(name)?,
            };
            let socket = UnixDatagram::unbound()?;
            // A manager that does not read must not stall the daemon.
            socket.set_nonblocking(true)?;
            Ok::<_, std::io::Error>((socket, addr))
        })();
        match target {
            Ok(target) => Notifier {
                target: Some(target),
            },
            Err(e) => {
                tracing::warn!(socket = name, error = %e, "cannot notify the service manager");
                Notifier::default()
            }
        }
    }

    /// The daemon serves (after start, and after a reload).
    pub fn ready(&self) {
        self.send("READY=1\nSTATUS=serving");
    }

    /// A reload begins.
    pub fn reloading(&self) {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let micros = (now.tv_sec as u64)
            .saturating_mul(1_000_000)
            .saturating_add(now.tv_nsec as u64 / 1_000);
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={micros}\nSTATUS=reloading"
        ));
    }

    /// The shutdown (drain) begins.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=draining");
    }

    fn send(&self, message: &str) {
        if let Some((socket, addr)) = &self.target
            && let Err(e) = socket.send_to_addr(message.as_bytes(), addr)
        {
            tracing::warn!(error = %e, "cannot notify the service manager");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_a_path_socket_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let manager = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::to(path.to_str().unwrap());
        notifier.ready();
        notifier.reloading();
        notifier.ready();
        notifier.stopping();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        for _ in 0..4 {
            let n = manager.recv(&mut buf).unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            got.push(text.lines().next().unwrap_or("").to_string());
            if text.starts_with("RELOADING=1") {
                assert!(text.contains("\nMONOTONIC_USEC="), "{text}");
            }
        }
        assert_eq!(got, ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]);
    }

    #[test]
    fn no_socket_or_a_missing_one_sends_nothing_and_does_not_fail() {
        Notifier::default().ready();
        Notifier::to("/nonexistent/dir/notify").stopping();
    }
}
