//! The built-in room protocol: JSON text frames handled natively (documented in docs/protocol.md).

use serde_json::{json, Map, Value};

/// A client request of the built-in protocol.
#[derive(Debug, PartialEq)]
pub enum Request {
    Join {
        room: String,
    },
    Leave {
        room: String,
    },
    RoomMessage {
        room: String,
        message: Value,
    },
    Ping {
        timestamp: Value,
    },
    /// Who is in a room (the asker must be a member).
    Presence {
        room: String,
    },
}

/// A parsed protocol frame: the request (or why it is malformed) and the `request_id` to echo.
#[derive(Debug)]
pub struct Parsed {
    pub request: Result<Request, String>,
    pub request_id: Option<Value>,
}

const TYPES: [&str; 5] = ["join_room", "leave_room", "room_message", "ping", "presence"];

/// Cheap test before any JSON parsing: protocol frames are objects naming a `type`.
fn looks_like_protocol(text: &str) -> bool {
    text.trim_start().starts_with('{') && text.contains("\"type\"")
}

fn room_field(obj: &Map<String, Value>) -> Result<String, String> {
    match obj.get("room_id") {
        Some(Value::String(s)) if crate::rooms::valid_room_id(s) => Ok(s.clone()),
        Some(Value::String(_)) => {
            Err(format!("room_id must be 1 to {} bytes", crate::rooms::MAX_ROOM_ID_BYTES))
        }
        Some(_) => Err("room_id must be a string".to_string()),
        None => Err("room_id is required".to_string()),
    }
}

/// Returns `None` for application messages (anything that is not a JSON object whose `type`
/// is one of the protocol's), otherwise the request or the reason it is malformed.
pub fn parse(text: &str) -> Option<Parsed> {
    if !looks_like_protocol(text) {
        return None;
    }
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) else {
        return None;
    };
    let kind = obj.get("type").and_then(Value::as_str)?;
    if !TYPES.contains(&kind) {
        return None;
    }
    let request_id = obj.get("request_id").cloned();
    let request = match kind {
        "join_room" => room_field(&obj).map(|room| Request::Join { room }),
        "leave_room" => room_field(&obj).map(|room| Request::Leave { room }),
        "room_message" => room_field(&obj).and_then(|room| match obj.get("message") {
            Some(message) => Ok(Request::RoomMessage { room, message: message.clone() }),
            None => Err("message is required".to_string()),
        }),
        "presence" => room_field(&obj).map(|room| Request::Presence { room }),
        _ => Ok(Request::Ping { timestamp: obj.get("timestamp").cloned().unwrap_or(Value::Null) }),
    };
    Some(Parsed { request, request_id })
}

fn with_request_id(mut v: Value, request_id: &Option<Value>) -> String {
    if let (Some(id), Value::Object(map)) = (request_id, &mut v) {
        map.insert("request_id".to_string(), id.clone());
    }
    v.to_string()
}

pub fn room_joined(room: &str, request_id: &Option<Value>) -> String {
    with_request_id(json!({ "type": "room_joined", "room_id": room }), request_id)
}

pub fn room_left(room: &str, request_id: &Option<Value>) -> String {
    with_request_id(json!({ "type": "room_left", "room_id": room }), request_id)
}

pub fn room_join_error(room: &str, error: &str, request_id: &Option<Value>) -> String {
    with_request_id(json!({ "type": "room_join_error", "room_id": room, "error": error }), request_id)
}

pub fn room_message(room: &str, message: &Value, from_client_id: &str) -> String {
    json!({ "type": "room_message", "room_id": room, "message": message, "from_client_id": from_client_id })
        .to_string()
}

pub fn pong(timestamp: &Value, request_id: &Option<Value>) -> String {
    with_request_id(json!({ "type": "pong", "timestamp": timestamp }), request_id)
}

pub fn error(message: &str, request_id: &Option<Value>) -> String {
    with_request_id(json!({ "type": "error", "error": message }), request_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_messages_are_not_protocol() {
        assert!(parse("hello").is_none());
        assert!(parse("{not json \"type\"").is_none());
        assert!(parse(r#"{"type":"chat","text":"x"}"#).is_none());
        assert!(parse(r#"["type"]"#).is_none());
    }

    #[test]
    fn requests() {
        let p = parse(r#"{"type":"join_room","room_id":"a","request_id":7}"#).expect("protocol");
        assert_eq!(p.request, Ok(Request::Join { room: "a".into() }));
        assert_eq!(p.request_id, Some(json!(7)));
        let p = parse(r#"{"type":"join_room"}"#).expect("protocol");
        assert!(p.request.is_err());
        let p = parse(r#"{"type":"leave_room","room_id":5}"#).expect("protocol");
        assert!(p.request.is_err());
        let p = parse(r#"{"type":"room_message","room_id":"a"}"#).expect("protocol");
        assert!(p.request.is_err());
        let p = parse(r#"{"type":"presence","room_id":"a"}"#).expect("protocol");
        assert_eq!(p.request, Ok(Request::Presence { room: "a".into() }));
    }

    #[test]
    fn replies_echo_request_id() {
        assert_eq!(
            room_joined("r", &Some(json!("x"))),
            r#"{"request_id":"x","room_id":"r","type":"room_joined"}"#
        );
    }
}
