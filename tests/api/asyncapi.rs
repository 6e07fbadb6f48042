//! The sockets' AsyncAPI document (`docs/asyncapi.yaml`) as the tests' oracle: read and
//! compiled once, it says which channel a socket path opens and whether a frame is one of
//! that channel's messages in the direction it travelled. [`RiderWs`] asks it about every
//! frame the server sends; the tests here check the document itself, that it refuses what
//! it does not describe, and that the protocol types the server writes agree with it.
//!
//! [`RiderWs`]: crate::riders::RiderWs

use std::collections::BTreeSet;
use std::sync::OnceLock;

use boon::{Compiler, Draft, SchemaIndex, Schemas};
use serde_json::{json, Value};

/// The document, built into the test binary so a test never reads a stale copy.
const DOCUMENT: &str = include_str!("../../docs/asyncapi.yaml");
/// Where the schema compiler files the document; nothing is ever fetched from it.
const BASE: &str = "urn:medify:asyncapi";

/// Which way a frame went, as the document's operations say it from the server's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Written by the server (`action: send`).
    FromServer,
    /// Read by the server (`action: receive`).
    ToServer,
}

/// A message of a channel, its payload compiled.
struct Message {
    /// Its key under `components/messages`.
    key: String,
    /// The frame `type` it carries (the message's `name`).
    name: String,
    direction: Direction,
    payload: SchemaIndex,
}

/// A channel and its messages.
pub struct Channel {
    key: String,
    address: String,
    messages: Vec<Message>,
}

/// The compiled document.
pub struct Spec {
    doc: Value,
    schemas: Schemas,
    channels: Vec<Channel>,
}

/// The document, loaded and compiled at first use; a broken document fails the test that
/// first needs it, naming the problem.
pub fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| Spec::load(DOCUMENT).unwrap_or_else(|e| panic!("docs/asyncapi.yaml: {e}")))
}

/// The value `reference` (`#/a/b`) points at in `doc`.
fn pointer<'d>(doc: &'d Value, reference: &str) -> Result<&'d Value, String> {
    reference
        .strip_prefix('#')
        .and_then(|p| doc.pointer(p))
        .ok_or_else(|| format!("{reference} points at nothing"))
}

/// Follows `$ref`s from `at` to the object they end on: its location and value.
fn resolve<'d>(doc: &'d Value, at: &str) -> Result<(String, &'d Value), String> {
    let mut location = at.to_owned();
    let mut value = pointer(doc, at)?;
    for _ in 0..8 {
        match value.get("$ref").and_then(Value::as_str) {
            Some(next) => {
                location = next.to_owned();
                value = pointer(doc, next)?;
            }
            None => return Ok((location, value)),
        }
    }
    Err(format!("{at}: too many $refs"))
}

/// Whether a request path (`/ws/orders/0195…/track`) fits a channel address
/// (`/ws/orders/{id}/track`).
fn fits(address: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    let (a, p): (Vec<&str>, Vec<&str>) = (address.split('/').collect(), path.split('/').collect());
    a.len() == p.len()
        && a.iter()
            .zip(&p)
            .all(|(a, p)| a == p || (a.starts_with('{') && a.ends_with('}') && !p.is_empty()))
}

impl Spec {
    fn load(text: &str) -> Result<Spec, String> {
        let doc: Value = serde_norway::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
        let mut compiler = Compiler::new();
        // AsyncAPI 3's Schema Object is JSON Schema draft 7 with a few more keywords.
        compiler.set_default_draft(Draft::V7);
        compiler.enable_format_assertions();
        compiler
            .add_resource(BASE, doc.clone())
            .map_err(|e| e.to_string())?;
        let mut schemas = Schemas::new();
        let mut channels = Vec::new();
        let operations = doc["operations"]
            .as_object()
            .ok_or("the document has no operations")?;
        let declared = doc["channels"]
            .as_object()
            .ok_or("the document has no channels")?;
        for (key, channel) in declared {
            let address = channel["address"]
                .as_str()
                .ok_or_else(|| format!("channel {key} has no address"))?
                .to_owned();
            let mut messages = Vec::new();
            for (op_key, op) in operations {
                if op["channel"]["$ref"] != format!("#/channels/{key}") {
                    continue;
                }
                let direction = match op["action"].as_str() {
                    Some("send") => Direction::FromServer,
                    Some("receive") => Direction::ToServer,
                    other => return Err(format!("operation {op_key}: action {other:?}")),
                };
                let refs = op["messages"]
                    .as_array()
                    .ok_or_else(|| format!("operation {op_key} lists no messages"))?;
                for r in refs {
                    let r = r["$ref"]
                        .as_str()
                        .ok_or_else(|| format!("operation {op_key}: a message is not a $ref"))?;
                    let (location, message) = resolve(&doc, r)?;
                    let name = message["name"]
                        .as_str()
                        .ok_or_else(|| format!("{location} has no name"))?
                        .to_owned();
                    let payload = compiler
                        .compile(&format!("{BASE}{location}/payload"), &mut schemas)
                        .map_err(|e| format!("{location}/payload: {e:#}"))?;
                    messages.push(Message {
                        key: location.rsplit('/').next().unwrap_or_default().to_owned(),
                        name,
                        direction,
                        payload,
                    });
                }
            }
            channels.push(Channel {
                key: key.clone(),
                address,
                messages,
            });
        }
        Ok(Spec {
            doc,
            schemas,
            channels,
        })
    }

    /// The channel whose address `path` opens; panics if none does, since every socket
    /// the tests open must be documented.
    pub fn channel(&self, path: &str) -> &Channel {
        self.channels
            .iter()
            .find(|c| fits(&c.address, path))
            .unwrap_or_else(|| panic!("{path} is not a channel of docs/asyncapi.yaml"))
    }

    /// Whether `frame` is a message of `channel` going `direction`: it is validated
    /// against the payload of the message named by its `type`.
    pub fn check(
        &self,
        channel: &Channel,
        direction: Direction,
        frame: &Value,
    ) -> Result<(), String> {
        let kind = frame["type"].as_str().unwrap_or_default();
        let message = channel
            .messages
            .iter()
            .find(|m| m.direction == direction && m.name == kind)
            .ok_or_else(|| {
                format!(
                    "no {direction:?} message of type {:?} on channel {} ({})",
                    frame["type"], channel.key, channel.address
                )
            })?;
        self.schemas
            .validate(frame, message.payload)
            .map_err(|e| format!("not a valid {} message: {e}", message.key))
    }
}

impl Channel {
    /// Panics, naming the frame and what is wrong with it, unless the server may send it
    /// on this channel.
    pub fn assert_from_server(&self, frame: &Value) {
        if let Err(e) = spec().check(self, Direction::FromServer, frame) {
            panic!(
                "the server sent a frame docs/asyncapi.yaml does not describe: {e}\nframe: {frame}"
            );
        }
    }

    /// Panics unless the server reads `frame` on this channel.
    pub fn assert_to_server(&self, frame: &Value) {
        if let Err(e) = spec().check(self, Direction::ToServer, frame) {
            panic!("a test sent a frame docs/asyncapi.yaml does not describe: {e}\nframe: {frame}");
        }
    }
}

/// A protocol value as it goes on the wire.
fn wire<T: serde::Serialize>(frame: &T) -> Value {
    serde_json::to_value(frame).expect("a protocol value serialises")
}

#[test]
fn the_document_is_asyncapi_3_and_every_message_belongs_to_a_channel() {
    let spec = spec();
    assert_eq!(spec.doc["asyncapi"], "3.0.0");
    let addresses: BTreeSet<&str> = spec.channels.iter().map(|c| c.address.as_str()).collect();
    assert_eq!(
        addresses,
        BTreeSet::from(["/ws/rider", "/ws/orders/{id}/track", "/ws/ops"])
    );
    // Every channel message is some operation's (so its direction is known), and every
    // component message is some channel's.
    let mut in_channels = BTreeSet::new();
    for (key, channel) in spec.doc["channels"].as_object().expect("channels") {
        let listed = channel["messages"].as_object().expect("channel messages");
        let used: BTreeSet<&str> = spec
            .channels
            .iter()
            .filter(|c| &c.key == key)
            .flat_map(|c| c.messages.iter().map(|m| m.key.as_str()))
            .collect();
        for (name, message) in listed {
            let (location, _) =
                resolve(&spec.doc, &format!("#/channels/{key}/messages/{name}")).expect("ref");
            let component = location.rsplit('/').next().expect("key");
            assert!(
                used.contains(component),
                "channel {key}'s message {name} is in no operation"
            );
            assert!(message.get("$ref").is_some(), "{key}/{name}: not a $ref");
            in_channels.insert(component.to_owned());
        }
    }
    let components: BTreeSet<String> = spec.doc["components"]["messages"]
        .as_object()
        .expect("components.messages")
        .keys()
        .cloned()
        .collect();
    assert_eq!(components, in_channels, "messages that no channel carries");
}

#[test]
fn every_example_in_the_document_is_valid_and_carries_its_type() {
    let spec = spec();
    let mut seen = 0;
    for channel in &spec.channels {
        for message in &channel.messages {
            let (_, body) = resolve(&spec.doc, &format!("#/components/messages/{}", message.key))
                .expect("message");
            let examples = body["examples"].as_array().expect("examples");
            assert!(!examples.is_empty(), "{} has no example", message.key);
            for example in examples {
                let frame = &example["payload"];
                assert_eq!(frame["type"], message.name.as_str(), "{}", message.key);
                spec.check(channel, message.direction, frame)
                    .unwrap_or_else(|e| panic!("{}'s example: {e}", message.key));
                // The payload pins its type: the same body under another type fails.
                let mut retyped = frame.clone();
                retyped["type"] = json!("x-unknown");
                assert!(spec.schemas.validate(&retyped, message.payload).is_err());
                seen += 1;
            }
        }
    }
    assert!(seen >= 16, "{seen} examples");
}

#[test]
fn frames_the_document_does_not_describe_are_refused() {
    let spec = spec();
    let rider = spec.channel("/ws/rider");
    let track = spec.channel("/ws/orders/0195a0c5-1f6a-7c88-9e21-4d0b7a2c6e93/track");
    let ops = spec.channel("/ws/ops");
    let from = Direction::FromServer;
    let order = "0195a0c5-1f6a-7c88-9e21-4d0b7a2c6e93";
    let refused = |channel: &Channel, direction: Direction, frame: Value| {
        assert!(
            spec.check(channel, direction, &frame).is_err(),
            "{frame} passed on {}",
            channel.address
        );
    };
    // An unknown type, and a known one on the wrong socket or going the wrong way.
    refused(track, from, json!({"type": "teleport"}));
    refused(ops, from, json!({"type": "arriving", "eta_s": 5}));
    refused(
        rider,
        from,
        json!({"type": "availability", "available": true}),
    );
    refused(
        rider,
        Direction::ToServer,
        json!({"type": "order_cancelled", "order_id": order}),
    );
    // A field more than documented, a field missing, a wrong type, a value off the list.
    refused(
        track,
        from,
        json!({"type": "arriving", "eta_s": 5, "extra": 1}),
    );
    refused(
        track,
        from,
        json!({"type": "status", "status": "picked_up"}),
    );
    refused(track, from, json!({"type": "arriving", "eta_s": 7.5}));
    refused(
        track,
        from,
        json!({"type": "status", "status": "lost", "at": "2026-03-14T09:31:02Z"}),
    );
    refused(
        rider,
        from,
        json!({"type": "error", "code": "oops", "message": "m"}),
    );
    refused(
        rider,
        from,
        json!({"type": "order_cancelled", "order_id": "not-a-uuid"}),
    );
    // A rider's view of an order never carries the delivery code.
    let example =
        spec.doc["components"]["messages"]["snapshot"]["examples"][0]["payload"]["order"].clone();
    assert!(example["delivery_code"].is_string());
    refused(
        rider,
        from,
        json!({"type": "welcome", "rider_id": order, "available": true,
               "active_order": example, "pending_offer": null}),
    );
    // And the real thing, for contrast.
    assert_eq!(
        spec.check(track, from, &json!({"type": "arriving", "eta_s": 5})),
        Ok(())
    );
}

#[test]
fn the_rider_frames_the_document_describes_are_the_ones_the_server_decodes() {
    let spec = spec();
    let rider = spec.channel("/ws/rider");
    for message in rider
        .messages
        .iter()
        .filter(|m| m.direction == Direction::ToServer)
    {
        let body = &spec.doc["components"]["messages"][&message.key];
        for example in body["examples"].as_array().expect("examples") {
            let frame = &example["payload"];
            medify_actors::protocol::decode(&frame.to_string())
                .unwrap_or_else(|e| panic!("{} example {frame}: {e}", message.key));
        }
    }
}

#[test]
fn the_protocol_types_write_documented_frames() {
    use medify_actors::fleet::{LastLocation, RiderView};
    use medify_actors::model::{OrderStatus, RiderState};
    use medify_actors::protocol::track::{Position, Snapshot, TrackFrame};
    use medify_actors::protocol::{OfferInfo, Outbound, Place};
    use uuid::Uuid;

    let spec = spec();
    let id = Uuid::now_v7();
    let offer = OfferInfo {
        offer_id: id,
        order_id: id,
        pickup: Place {
            lat: 12.93,
            lng: 77.61,
            name: Some("Hub".into()),
        },
        dropoff: Place {
            lat: 12.94,
            lng: 77.62,
            name: None,
        },
        distance_m: 640,
        expires_at: chrono::Utc::now().to_rfc3339(),
    };
    let rider = spec.channel("/ws/rider");
    for frame in [
        Outbound::Welcome {
            rider_id: id,
            available: true,
            active_order: None,
            pending_offer: Some(offer.clone()),
        },
        Outbound::Offer(offer.clone()),
        Outbound::OfferExpired { offer_id: id },
        Outbound::Assigned {
            order_id: id,
            pickup: offer.pickup.clone(),
            dropoff: offer.dropoff.clone(),
        },
        Outbound::OrderCancelled { order_id: id },
        Outbound::error("rate_limited", "slow down"),
        Outbound::Error {
            code: "invalid_location",
            message: "point 3: too fast".into(),
            index: Some(3),
        },
    ] {
        rider.assert_from_server(&wire(&frame));
    }

    let track = spec.channel(&format!("/ws/orders/{id}/track"));
    let order =
        spec.doc["components"]["messages"]["snapshot"]["examples"][0]["payload"]["order"].clone();
    for located in [
        None,
        Some(Position {
            lat: 12.93,
            lng: 77.61,
            ts: 1_773_480_613_000,
        }),
    ] {
        track.assert_from_server(&wire(&Snapshot {
            order: order.clone(),
            rider_location: located,
            eta_s: located.map(|_| 412),
        }));
    }
    for frame in [
        TrackFrame::RiderLocation {
            lat: 12.93,
            lng: 77.61,
            ts: 1_773_480_618_000,
            heading: None,
            eta_s: None,
        },
        TrackFrame::RiderLocation {
            lat: 12.93,
            lng: 77.61,
            ts: 1_773_480_618_000,
            heading: Some(92.5),
            eta_s: Some(398),
        },
        TrackFrame::Status {
            status: OrderStatus::Cancelled,
            at: chrono::Utc::now().to_rfc3339(),
        },
        TrackFrame::Arriving { eta_s: 0 },
    ] {
        track.assert_from_server(&wire(&frame));
    }

    // The ops frame as the feed builds it: listed riders, an order, supply and demand.
    let ops = spec.channel("/ws/ops");
    let mut riders: Vec<RiderView> = RiderState::ALL
        .into_iter()
        .map(|state| {
            let mut view = RiderView::new(Uuid::now_v7());
            view.online = true;
            view.state = state;
            view.last_location = Some(LastLocation {
                lat: 12.97,
                lng: 77.59,
                ts: 0,
            });
            view
        })
        .collect();
    riders.push(RiderView::new(Uuid::now_v7())); // offline, no position: not listed
    let orders = [medify::store::orders::OrderPin {
        id,
        status: OrderStatus::Dispatching,
        pickup_lat: 12.971,
        pickup_lng: 77.594,
        dropoff_lat: 12.98,
        dropoff_lng: 77.6,
    }];
    let frame = wire(&medify::ws::fleet_feed::fleet_frame(
        chrono::Utc::now(),
        &riders,
        &orders,
    ));
    assert_eq!(frame["riders"].as_array().map(Vec::len), Some(4), "{frame}");
    assert!(!frame["cells"]["features"]
        .as_array()
        .expect("cells")
        .is_empty());
    ops.assert_from_server(&frame);
}
