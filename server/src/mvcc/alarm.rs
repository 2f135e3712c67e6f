//! Raised alarms (NOSPACE, CORRUPT) per member: replicated state, activated and deactivated
//! through the log and persisted as `a|member|type` records beside the key-values, so every
//! member refuses the same writes while NOSPACE is raised.

use std::collections::BTreeSet;

use crate::proto::etcdserverpb::{AlarmMember, AlarmType};

/// Prefix of alarm records in the MVCC keyspace.
pub const ALARM_PREFIX: u8 = b'a';

/// The storage key of `member`'s alarm `alarm`.
pub fn alarm_key(member: u64, alarm: i32) -> Vec<u8> {
    let mut key = Vec::with_capacity(13);
    key.push(ALARM_PREFIX);
    key.extend_from_slice(&member.to_be_bytes());
    key.extend_from_slice(&alarm.to_be_bytes());
    key
}

/// Parses an alarm record key.
pub fn parse_alarm_key(key: &[u8]) -> Option<(u64, i32)> {
    let (&prefix, rest) = key.split_first()?;
    if prefix != ALARM_PREFIX || rest.len() != 12 {
        return None;
    }
    let member = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let alarm = i32::from_be_bytes(rest.get(8..)?.try_into().ok()?);
    Some((member, alarm))
}

/// The raised alarms.
#[derive(Debug, Default, Clone)]
pub struct AlarmSet {
    raised: BTreeSet<(u64, i32)>,
}

impl AlarmSet {
    /// Raises `alarm` for `member`; true when it was not raised yet.
    pub fn activate(&mut self, member: u64, alarm: i32) -> bool {
        self.raised.insert((member, alarm))
    }

    /// Clears `alarm` for `member`; true when it was raised.
    pub fn deactivate(&mut self, member: u64, alarm: i32) -> bool {
        self.raised.remove(&(member, alarm))
    }

    /// True when any member has `alarm` raised.
    pub fn any(&self, alarm: AlarmType) -> bool {
        self.raised.iter().any(|(_, a)| *a == alarm as i32)
    }

    /// The raised alarms of type `filter` (all for `None`), as etcd lists them.
    pub fn list(&self, filter: AlarmType) -> Vec<AlarmMember> {
        self.raised
            .iter()
            .filter(|(_, a)| filter == AlarmType::None || *a == filter as i32)
            .map(|&(member_id, alarm)| AlarmMember { member_id, alarm })
            .collect()
    }
}

/// etcd's text form of a raised alarm in Status.errors (`memberID:… alarm:NOSPACE `).
pub fn describe(alarm: &AlarmMember) -> String {
    let name = AlarmType::try_from(alarm.alarm)
        .map_or_else(|_| alarm.alarm.to_string(), |a| a.as_str_name().to_string());
    format!("memberID:{} alarm:{} ", alarm.member_id, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_round_trip_through_their_keys_and_list_by_type() {
        let key = alarm_key(42, AlarmType::Nospace as i32);
        assert_eq!(parse_alarm_key(&key), Some((42, AlarmType::Nospace as i32)));
        let mut set = AlarmSet::default();
        assert!(set.activate(42, AlarmType::Nospace as i32));
        assert!(!set.activate(42, AlarmType::Nospace as i32));
        set.activate(7, AlarmType::Corrupt as i32);
        assert!(set.any(AlarmType::Nospace));
        assert_eq!(set.list(AlarmType::Nospace).len(), 1);
        assert_eq!(set.list(AlarmType::None).len(), 2);
        assert_eq!(
            describe(&set.list(AlarmType::Nospace)[0]),
            "memberID:42 alarm:NOSPACE "
        );
        assert!(set.deactivate(42, AlarmType::Nospace as i32));
        assert!(!set.any(AlarmType::Nospace));
    }
}
