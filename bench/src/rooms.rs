//! The group chat scenario's setup: the active sessions enter rooms of `size` occupants
//! each, on the server's XEP-0045 service. The first session of each room creates it and
//! submits the configuration form with room for `size` occupants (the room stays locked
//! until then); the others enter once it is open. Every join asks for no history, and is done when the room's subject
//! arrives (XEP-0045 §7.2.16).

use jabberwock_proto::ns;

use crate::client::Session;

/// The room session `i` belongs to, with rooms of `size`.
pub fn room_of(i: usize, size: usize, service: &str) -> String {
    format!("load{}@{service}", i / size)
}

/// Sends the join and reads until the subject; returns the status codes of the
/// self-presence.
async fn enter(s: &mut Session, room: &str, nick: &str) -> Result<Vec<String>, String> {
    let join = format!(
        "<presence xmlns='jabber:client' to='{room}/{nick}'><x xmlns='{}'><history maxstanzas='0'/></x></presence>",
        ns::MUC
    );
    s.tx.send(&join).await?;
    let mut codes = None;
    loop {
        let st = s.rx.next_stanza(&format!("entering {room}")).await?;
        if st.stanza_type() == Some("error") && st.from().is_some_and(|f| f.starts_with(room)) {
            return Err(format!("entering {room}: {}", st.inner()));
        }
        if st.name() == "presence" && st.from() == Some(&format!("{room}/{nick}")) {
            let el = st.to_element().map_err(|e| e.to_string())?;
            let x = el.child("x", ns::MUC_USER);
            codes = Some(x.map(|x| x.children().filter_map(|c| c.attr("code")).map(str::to_owned).collect()).unwrap_or_default());
        } else if st.name() == "message" && st.inner().contains("<subject") {
            if let Some(codes) = codes {
                return Ok(codes);
            }
        }
    }
}

/// Puts every session into its room (creators first, then everyone else at once).
pub async fn enter_all(sessions: &mut [Session], size: usize, service: &str) -> Result<(), String> {
    let form = format!(
        "<query xmlns='{}'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
         <field var='muc#roomconfig_maxusers'><value>{size}</value></field></x></query>",
        ns::MUC_OWNER
    );
    let form = &form;
    let creators = futures_util::future::try_join_all(sessions.iter_mut().enumerate().filter(|(i, _)| i % size == 0).map(|(i, s)| async move {
        let room = room_of(i, size, service);
        let codes = enter(s, &room, &format!("n{i}")).await?;
        if codes.iter().any(|c| c == "201") {
            s.tx.send(&format!("<iq type='set' id='open{i}' to='{room}' xmlns='jabber:client'>{form}</iq>")).await?;
            loop {
                let st = s.rx.next_stanza("the instant room's result").await?;
                if st.name() == "iq" && st.id() == Some(&format!("open{i}")) {
                    if st.stanza_type() != Some("result") {
                        return Err(format!("opening {room}: {}", st.inner()));
                    }
                    break;
                }
            }
        }
        Ok::<(), String>(())
    }));
    creators.await?;
    futures_util::future::try_join_all(sessions.iter_mut().enumerate().filter(|(i, _)| i % size != 0).map(|(i, s)| async move {
        enter(s, &room_of(i, size, service), &format!("n{i}")).await.map(|_| ())
    }))
    .await?;
    Ok(())
}
