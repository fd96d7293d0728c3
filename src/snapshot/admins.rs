//! The admin users as the snapshot holds them: what a token check needs (id, name, role,
//! tenant, token generation), never a password hash. Every node rebuilds this with the
//! rest of the snapshot when `config_state.version` changes, which is how a revoked admin
//! token stops working everywhere within a second (docs/architecture.md, "Admin tokens").

use std::collections::HashMap;

use uuid::Uuid;

use crate::store::AdminTokenRecord;
use crate::vocab::Role;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminEntry {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub tenant_id: Option<Uuid>,
    pub token_generation: i64,
}

#[derive(Debug, Default)]
pub struct AdminDirectory {
    by_id: HashMap<Uuid, AdminEntry>,
    by_name: HashMap<String, Uuid>,
}

impl AdminDirectory {
    /// A row whose role does not parse (a hand-edited database) is left out and logged:
    /// its tokens are refused rather than given a guessed role.
    pub fn compile(records: Vec<AdminTokenRecord>) -> AdminDirectory {
        let mut directory = AdminDirectory::default();
        for r in records {
            let Some(role) = Role::parse(&r.role) else {
                tracing::error!(admin = %r.name, role = %r.role, "stored admin has an unknown role; its tokens are refused");
                continue;
            };
            directory.by_name.insert(r.name.clone(), r.id);
            directory.by_id.insert(
                r.id,
                AdminEntry {
                    id: r.id,
                    name: r.name,
                    role,
                    tenant_id: r.tenant_id,
                    token_generation: r.token_generation,
                },
            );
        }
        directory
    }

    pub fn get(&self, id: Uuid) -> Option<&AdminEntry> {
        self.by_id.get(&id)
    }

    /// Whether `sub` names a stored admin, by id or by name.
    pub fn names_stored_admin(&self, sub: &str) -> bool {
        self.by_name.contains_key(sub)
            || Uuid::parse_str(sub).is_ok_and(|id| self.by_id.contains_key(&id))
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}
