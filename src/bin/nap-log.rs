//! `nap-log`: the ONC RPC operation log of the Napster-like directory.

peerkit::plain_daemon_main! {
    /// Serves program 0x20000099 version 1 (operations.x) and prints
    /// `USER OPERATION TIMESTAMP` for every LOG_OPERATION call. Registers with
    /// the local rpcbind.
    peerkit::nap::cmd::log
}
