//! The date-time web service (`nap-time`) and the client peers ask it with.
//!
//! - `GET /`: the date-time as text, `DD/MM/YYYY HH:MM:SS` and a newline.
//! - `GET /?wsdl`: a WSDL matching the course's spyne service
//!   (`DateTimeService`, namespace `spyne.examples.datetime`, operation
//!   `get_current_datetime`, result element `get_current_datetimeResult`),
//!   whose address is the one the caller used (its `Host` header), so a
//!   zeep client anywhere reaches us back.
//! - `POST /`: SOAP 1.1 (document/literal); `get_current_datetime` answers
//!   the date-time, anything else a SOAP fault.
//!
//! The time is UTC. HTTP/1.1 connections are kept alive between requests
//! (zeep keeps its session open), each one under the server core's
//! request and idle deadlines. Requests are read by the shared `http`
//! module and SOAP envelopes by `quick-xml`.

use std::sync::Arc;

use super::records::Records;
use crate::events::Events;
use crate::metrics::Registry;
use std::io::{Read, Write};
use std::net::SocketAddr;

use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};

use super::wire::DateTime;
use crate::error::{Error, Result, Role, Stage};
use crate::http;
use crate::net::{self, Timeouts};
use crate::server::{Limits, Server, Session};

/// Default address, as the course's service.
pub(crate) const DEFAULT_LISTEN: &str = "0.0.0.0:8000";

/// The service's namespace.
pub(crate) const NAMESPACE: &str = "spyne.examples.datetime";

/// The SOAP 1.1 envelope namespace.
const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// Longest request body (a SOAP envelope).
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// Serves the date-time until Ctrl-C or SIGTERM.
pub(crate) fn run(listen: &str, limits: Limits, http: Option<&str>) -> Result<()> {
    let server = Server::start(listen, limits)?;
    server.announce()?;
    let metrics = Registry::new();
    let events = Events::new();
    server.export_metrics(&metrics);
    let records = Arc::new(Records::new(
        "nap-time: the date-time service",
        &[
            ("t", "time"),
            ("client", "client"),
            ("kind", "asked"),
            ("status", "answer"),
            ("datetime", "date-time given"),
        ],
        &metrics,
        "time_requests",
        "Requests answered, by kind: text (GET /), wsdl, soap, fault, refused.",
        &["text", "wsdl", "soap", "fault", "refused"],
        events.clone(),
    ));
    crate::view::serve_if(http, &server, metrics, events, || records.clone())?;
    server.serve(move |session| {
        if let Err(e) = serve_conn(&session, &records)
            && !e.is_disconnect()
        {
            crate::diag!("{}: {e}", session.peer());
        }
    })
}

/// One answer.
type Reply = http::Reply;

/// An XML reply.
fn xml(status: &'static str, body: String) -> Reply {
    Reply::new(status, "text/xml; charset=utf-8", body)
}

fn serve_conn(session: &Session, records: &Records) -> Result<()> {
    let local = session.stream().local_addr()?;
    http::serve(session, MAX_BODY, |req| {
        let (reply, kind, datetime) = route(req, local);
        records.add(kind, |m| {
            m.insert("client".into(), session.peer().to_string().into());
            m.insert("status".into(), reply.status.into());
            m.insert("datetime".into(), datetime.map(|d| d.to_string()).into());
        });
        Ok(http::Handled::Reply(reply))
    })
}

/// The reply to `req`, what kind of request it was and the date-time
/// given, if one was.
fn route(req: &http::Request, local: SocketAddr) -> (Reply, &'static str, Option<DateTime>) {
    let query = req.query.as_deref();
    if req.path != "/" {
        return (Reply::text("404 Not Found", "not found\n"), "refused", None);
    }
    match (req.method.as_str(), query) {
        ("GET", Some(q)) if q.eq_ignore_ascii_case("wsdl") => {
            let address = format!("http://{}/", reachable_host(req.host.as_deref(), local));
            (xml("200 OK", wsdl(&address)), "wsdl", None)
        }
        ("GET", None) => {
            let now = DateTime::now();
            (Reply::text("200 OK", format!("{now}\n")), "text", Some(now))
        }
        ("POST", _) => match soap_operation(&req.body) {
            Ok(op) if op == "get_current_datetime" => {
                let now = DateTime::now();
                (xml("200 OK", soap_response(&now)), "soap", Some(now))
            }
            Ok(op) => (
                xml(
                    "500 Internal Server Error",
                    soap_fault("soap11env:Client", &format!("no such operation: {op}")),
                ),
                "fault",
                None,
            ),
            Err(why) => (
                xml(
                    "500 Internal Server Error",
                    soap_fault("soap11env:Client", &why),
                ),
                "fault",
                None,
            ),
        },
        _ => (
            Reply::text("405 Method Not Allowed", "method not allowed\n"),
            "refused",
            None,
        ),
    }
}

/// The address for the WSDL: the `Host` the caller used if it is a plain
/// host[:port], else our own socket's address.
fn reachable_host(host: Option<&str>, local: SocketAddr) -> String {
    let plain = |h: &str| {
        !h.is_empty()
            && h.len() <= 255
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
    };
    match host {
        Some(h) if plain(h) => h.to_string(),
        _ => local.to_string(),
    }
}

/// The local name of the SOAP body's first element, if it is in our
/// namespace.
pub(crate) fn soap_operation(body: &[u8]) -> std::result::Result<String, String> {
    let mut reader = quick_xml::NsReader::from_reader(body);
    let env = ResolveResult::Bound(Namespace(SOAP_ENV));
    let ours = ResolveResult::Bound(Namespace(NAMESPACE));
    // Element path: 0 outside, 1 in Envelope, 2 in Body.
    let mut depth = 0usize;
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| format!("malformed XML: {e}"))?;
        match event {
            Event::Start(e) | Event::Empty(e) => {
                let local = e.local_name();
                let name: String = local.as_ref().to_string();
                match depth {
                    0 if ns == env && name == "Envelope" => depth = 1,
                    1 if ns == env && name == "Header" => {
                        let end = e.to_end().into_owned();
                        reader
                            .read_to_end(end.name())
                            .map_err(|e| format!("malformed XML: {e}"))?;
                    }
                    1 if ns == env && name == "Body" => depth = 2,
                    2 if ns == ours => return Ok(name),
                    2 => return Err(format!("{name} is not in namespace {NAMESPACE}")),
                    _ => {
                        return Err(format!(
                            "unexpected element {name}: not a SOAP 1.1 envelope"
                        ));
                    }
                }
            }
            Event::Eof => return Err("no operation in the SOAP body".into()),
            _ => {}
        }
    }
}

fn soap_response(now: &DateTime) -> String {
    format!(
        "<?xml version='1.0' encoding='UTF-8'?>\n\
         <soap11env:Envelope xmlns:soap11env=\"{SOAP_ENV}\" xmlns:tns=\"{NAMESPACE}\">\
         <soap11env:Body><tns:get_current_datetimeResponse>\
         <tns:get_current_datetimeResult>{now}</tns:get_current_datetimeResult>\
         </tns:get_current_datetimeResponse></soap11env:Body></soap11env:Envelope>"
    )
}

fn soap_fault(code: &str, text: &str) -> String {
    format!(
        "<?xml version='1.0' encoding='UTF-8'?>\n\
         <soap11env:Envelope xmlns:soap11env=\"{SOAP_ENV}\">\
         <soap11env:Body><soap11env:Fault><faultcode>{code}</faultcode>\
         <faultstring>{}</faultstring></soap11env:Fault></soap11env:Body>\
         </soap11env:Envelope>",
        quick_xml::escape::escape(text)
    )
}

/// The service description, with `address` as the endpoint.
fn wsdl(address: &str) -> String {
    let address = quick_xml::escape::escape(address);
    format!(
        r#"<?xml version='1.0' encoding='UTF-8'?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:tns="{NAMESPACE}" targetNamespace="{NAMESPACE}" name="Application">
  <wsdl:types>
    <xs:schema targetNamespace="{NAMESPACE}" elementFormDefault="qualified">
      <xs:complexType name="get_current_datetime">
        <xs:sequence/>
      </xs:complexType>
      <xs:complexType name="get_current_datetimeResponse">
        <xs:sequence>
          <xs:element name="get_current_datetimeResult" type="xs:string" minOccurs="0" nillable="true"/>
        </xs:sequence>
      </xs:complexType>
      <xs:element name="get_current_datetime" type="tns:get_current_datetime"/>
      <xs:element name="get_current_datetimeResponse" type="tns:get_current_datetimeResponse"/>
    </xs:schema>
  </wsdl:types>
  <wsdl:message name="get_current_datetime">
    <wsdl:part name="get_current_datetime" element="tns:get_current_datetime"/>
  </wsdl:message>
  <wsdl:message name="get_current_datetimeResponse">
    <wsdl:part name="get_current_datetimeResponse" element="tns:get_current_datetimeResponse"/>
  </wsdl:message>
  <wsdl:portType name="Application">
    <wsdl:operation name="get_current_datetime" parameterOrder="get_current_datetime">
      <wsdl:input name="get_current_datetime" message="tns:get_current_datetime"/>
      <wsdl:output name="get_current_datetimeResponse" message="tns:get_current_datetimeResponse"/>
    </wsdl:operation>
  </wsdl:portType>
  <wsdl:binding name="Application" type="tns:Application">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="get_current_datetime">
      <soap:operation soapAction="get_current_datetime" style="document"/>
      <wsdl:input name="get_current_datetime">
        <soap:body use="literal"/>
      </wsdl:input>
      <wsdl:output name="get_current_datetimeResponse">
        <soap:body use="literal"/>
      </wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:service name="DateTimeService">
    <wsdl:port name="Application" binding="tns:Application">
      <soap:address location="{address}"/>
    </wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"#
    )
}

/// Asks the date-time service at `url` (`http://HOST[:PORT][/PATH]`, plain
/// `GET`) for the date-time.
pub(crate) fn fetch(url: &str, timeouts: &Timeouts) -> Result<DateTime> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| Error::setting(format!("{url}: only http:// URLs are supported")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'))
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let stream = net::connect(&addr, timeouts).map_err(|e| e.doing(format!("asking {url}")))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    (&stream).write_all(request.as_bytes())?;
    let mut got = Vec::new();
    (&stream)
        .take((http::MAX_HEAD + MAX_BODY) as u64)
        .read_to_end(&mut got)?;
    let mut headers = [httparse::EMPTY_HEADER; http::MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let body_at = match resp.parse(&got) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(Error::Truncated),
        Err(e) => {
            return Err(Error::invalid(
                Stage::Reply,
                format!("{url}: bad HTTP answer: {e}"),
            ));
        }
    };
    if resp.code != Some(200) {
        return Err(Error::remote(
            Role::TimeService,
            format!("HTTP {} from {url}", resp.code.unwrap_or_default()),
        ));
    }
    let text = String::from_utf8_lossy(&got[body_at..]);
    DateTime::parse(text.trim()).ok_or_else(|| {
        Error::invalid(
            Stage::Body,
            format!("{url}: {:?} is not a date-time", text.trim()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soap_operation_is_found_in_its_namespace() {
        let zeep = br#"<?xml version='1.0' encoding='utf-8'?>
<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"><soap-env:Body><ns0:get_current_datetime xmlns:ns0="spyne.examples.datetime"/></soap-env:Body></soap-env:Envelope>"#;
        assert_eq!(soap_operation(zeep).unwrap(), "get_current_datetime");
        let with_header = br#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Header><x/></e:Header><e:Body><get_current_datetime xmlns="spyne.examples.datetime"></get_current_datetime></e:Body></e:Envelope>"#;
        assert_eq!(soap_operation(with_header).unwrap(), "get_current_datetime");
        crate::fuzzing::seed("soap_body", zeep);
        crate::fuzzing::seed("soap_body", with_header);
        let other_ns = br#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><get_current_datetime/></e:Body></e:Envelope>"#;
        assert!(soap_operation(other_ns).is_err());
        assert!(soap_operation(b"<not xml").is_err());
        assert!(soap_operation(b"").is_err());
    }

    #[test]
    fn the_wsdl_names_the_course_service_and_the_callers_address() {
        let local: SocketAddr = "0.0.0.0:8000".parse().unwrap();
        assert_eq!(
            reachable_host(Some("10.0.0.5:8000"), local),
            "10.0.0.5:8000"
        );
        assert_eq!(reachable_host(Some("evil\"><x"), local), "0.0.0.0:8000");
        let w = wsdl("http://10.0.0.5:8000/");
        for needle in [
            "<wsdl:service name=\"DateTimeService\">",
            "targetNamespace=\"spyne.examples.datetime\"",
            "<xs:element name=\"get_current_datetimeResult\"",
            "location=\"http://10.0.0.5:8000/\"",
        ] {
            assert!(w.contains(needle), "{needle}");
        }
        let r = soap_response(&DateTime::from_unix(1_795_255_200));
        assert!(r.contains(
            "<tns:get_current_datetimeResult>21/11/2026 10:00:00</tns:get_current_datetimeResult>"
        ));
    }
}
