//! Presence: who is in a room, as the members' client ids and the metadata fields the
//! application marked public (`presence: { fields }`). This node's view is read from the room
//! registry; the cluster's view from Redis (`cluster::presence`).

use napi_derive::napi;
use serde_json::{json, Map, Value};

use crate::conn::Conn;

/// One member connection as presence shows it.
#[napi(object)]
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceEntry {
    pub client_id: String,
    /// JSON object text of the public fields the connection has.
    pub fields: String,
}

/// The public fields of a connection's metadata, as a JSON object.
pub fn public_fields(conn: &Conn, fields: &[String]) -> Map<String, Value> {
    let mut out = Map::new();
    if fields.is_empty() {
        return out;
    }
    let Some(extra) = conn.extra() else { return out };
    let Some(extra) = extra.as_ref() else { return out };
    for name in fields {
        if let Some(value) = extra.metadata.get(name).and_then(|text| serde_json::from_str(text).ok()) {
            out.insert(name.clone(), value);
        }
    }
    out
}

/// A connection's presence entry.
pub fn entry(conn: &Conn, fields: &[String]) -> PresenceEntry {
    PresenceEntry {
        client_id: conn.client_id.clone(),
        fields: Value::Object(public_fields(conn, fields)).to_string(),
    }
}

/// The `presence_join` / `presence_leave` frame members of a room with presence events get.
pub fn event(kind: &str, room: &str, entry: &PresenceEntry) -> String {
    let fields: Value = serde_json::from_str(&entry.fields).unwrap_or_else(|_| json!({}));
    json!({ "type": kind, "room_id": room, "client_id": entry.client_id, "fields": fields }).to_string()
}

/// The reply to a client's `presence` request.
pub fn reply(room: &str, entries: &[PresenceEntry], request_id: &Option<Value>) -> String {
    let members: Vec<Value> = entries
        .iter()
        .map(|e| {
            let fields: Value = serde_json::from_str(&e.fields).unwrap_or_else(|_| json!({}));
            json!({ "client_id": e.client_id, "fields": fields })
        })
        .collect();
    let mut v = json!({ "type": "presence", "room_id": room, "members": members });
    if let (Some(id), Value::Object(map)) = (request_id, &mut v) {
        map.insert("request_id".to_string(), id.clone());
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_client_id_and_fields() {
        let e = PresenceEntry { client_id: "ann".into(), fields: r#"{"name":"Ann"}"#.into() };
        assert_eq!(
            event("presence_join", "r", &e),
            r#"{"client_id":"ann","fields":{"name":"Ann"},"room_id":"r","type":"presence_join"}"#
        );
        assert_eq!(
            reply("r", &[e], &Some(json!(3))),
            r#"{"members":[{"client_id":"ann","fields":{"name":"Ann"}}],"request_id":3,"room_id":"r","type":"presence"}"#
        );
    }
}
