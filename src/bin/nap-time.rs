//! `nap-time`: the date-time web service (plain text and SOAP 1.1).

peerkit::plain_daemon_main! {
    /// Gives the date-time (UTC, `DD/MM/YYYY HH:MM:SS`): as text at `GET /`,
    /// and as the SOAP operation `get_current_datetime` described at `/?wsdl`.
    peerkit::nap::cmd::time
}
