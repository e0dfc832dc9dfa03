# Partner API authorization policy.
#
# Deny by default: a partner may do or read only what a rule below allows.
# A partner reaches a practice's data only through a *grant*: the practice's consent, with
# scopes, an expiry and possibly a revocation. Row rules are compiled to SQL (oso data
# filtering), so they may only use fields and relations, never method calls.
# Docs: docs/policy-guide.md

actor Partner {}

# ---------------------------------------------------------------------------
# Grants
# ---------------------------------------------------------------------------

# A grant is live for a partner while it is its own, not revoked and not expired
# at the time of the request.
live_grant(partner: Partner, grant) if
    grant.partner_id = partner.id and
    grant.revoked_at = nil and
    grant.expires_at > partner.request_time;

# Each scope is a boolean field of the grant, named after the scope.
# (Helper rules leave `grant` untyped: in SQL filters its type is known only from the relation.)
has_scope(grant, "appointments:read") if grant.appointments_read = true;
has_scope(grant, "appointments:write") if grant.appointments_write = true;
has_scope(grant, "patients:identity") if grant.patients_identity = true;
has_scope(grant, "patients:contact") if grant.patients_contact = true;
has_scope(grant, "appointments:reason") if grant.appointments_reason = true;

# A partner holds a scope at a record's practice: through its live grant there that has the scope.
holds(partner: Partner, scope: String, record) if
    grant in record.grants and
    live_grant(partner, grant) and
    has_scope(grant, scope);

# ---------------------------------------------------------------------------
# Rows: which records a partner may see or change
# ---------------------------------------------------------------------------

resource Practice {
    permissions = ["read", "book"];
}

# Any live grant shows the practice itself (name, address, timezone).
has_permission(partner: Partner, "read", practice: Practice) if
    grant in practice.grants and
    live_grant(partner, grant);

has_permission(partner: Partner, "book", practice: Practice) if
    holds(partner, "appointments:write", practice);

resource Practitioner {
    permissions = ["read"];
}

# A Practitioner is a practitioner at one practice: visible with appointments:read there.
has_permission(partner: Partner, "read", practitioner: Practitioner) if
    holds(partner, "appointments:read", practitioner);

resource Patient {
    permissions = ["read"];
}

# The patient record (its id) comes with appointments:read; its fields need more (see below).
has_permission(partner: Partner, "read", patient: Patient) if
    holds(partner, "appointments:read", patient);

resource Appointment {
    permissions = ["read", "reschedule", "cancel"];
}

# Seeing appointments needs appointments:read; moving or cancelling them, appointments:write.
has_permission(partner: Partner, "read", appointment: Appointment) if
    holds(partner, "appointments:read", appointment);

has_permission(partner: Partner, action: String, appointment: Appointment) if
    action in ["reschedule", "cancel"] and
    holds(partner, "appointments:write", appointment);

# An appointment the practice deleted, as the sync feed reports it.
resource DeletedAppointment {
    permissions = ["read"];
}

has_permission(partner: Partner, "read", deleted: DeletedAppointment) if
    holds(partner, "appointments:read", deleted);

resource Grant {
    permissions = ["read"];
}

# A partner sees its own live grants (the `viewer` of the API).
has_permission(partner: Partner, "read", grant: Grant) if
    live_grant(partner, grant);

# ---------------------------------------------------------------------------
# Every action on every resource goes through its permissions above.
allow(partner: Partner, action: String, resource) if
    has_permission(partner, action, resource);
