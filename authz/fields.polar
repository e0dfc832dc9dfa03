# Field level: what a partner may read of a record it can see.
#
# Decided on the partner's grant at the record's practice, once per request and practice,
# never per row. A field is named "Type.field" as in the GraphQL schema.
# Every field of the schema must be classified below, or in its type's line at the end;
# tests/authz/test_field_coverage.py fails otherwise. Deny by default: a field with no line
# is never readable, and a line whose scope the grant lacks makes the field null with a
# FORBIDDEN error.

# The application asks about a Record: an appointment or a patient read through a grant,
# inside the grant's reading horizon or not (purpose binding, below).
allow_field(partner: Partner, "read", record: Record, field: String) if
    allow_field(partner, "read", record.grant, field) and
    not purpose_bound(field);

allow_field(partner: Partner, "read", record: Record, field: String) if
    allow_field(partner, "read", record.grant, field) and
    purpose_bound(field) and
    within_purpose(partner, record);

allow_field(partner: Partner, "read", grant: Grant, field: String) if
    live_grant(partner, grant) and
    field_with_any_grant(field);

allow_field(partner: Partner, "read", grant: Grant, field: String) if
    live_grant(partner, grant) and
    field_needs_scope(field, scope) and
    has_scope(grant, scope);

# The practice itself: any live grant.
field_with_any_grant("Practice.id");
field_with_any_grant("Practice.name");
field_with_any_grant("Practice.address");
field_with_any_grant("Practice.timezone");
field_needs_scope("Practice.practitioners", "appointments:read");

# Who works there and when: appointments:read.
field_needs_scope("Practitioner.id", "appointments:read");
field_needs_scope("Practitioner.firstName", "appointments:read");
field_needs_scope("Practitioner.lastName", "appointments:read");
field_needs_scope("Practitioner.specialty", "appointments:read");
field_needs_scope("Practitioner.rpps", "appointments:read");

field_needs_scope("Appointment.id", "appointments:read");
field_needs_scope("Appointment.practice", "appointments:read");
field_needs_scope("Appointment.practitioner", "appointments:read");
field_needs_scope("Appointment.patient", "appointments:read");
field_needs_scope("Appointment.startsAt", "appointments:read");
field_needs_scope("Appointment.endsAt", "appointments:read");
field_needs_scope("Appointment.status", "appointments:read");
field_needs_scope("Appointment.source", "appointments:read");
field_needs_scope("Appointment.createdAt", "appointments:read");
field_needs_scope("Appointment.updatedAt", "appointments:read");
# The medical motive is health data: its own scope.
field_needs_scope("Appointment.reason", "appointments:reason");
# Appointment.internalNote is deliberately absent: practice-only, never readable.

# What a partner writing without appointments:read may read of an appointment its write answers with
# (booked, moved or cancelled: decided per grant, as every field; the row rules decide which it reaches).
field_needs_scope("Appointment.id", "appointments:write");
field_needs_scope("Appointment.startsAt", "appointments:write");
field_needs_scope("Appointment.endsAt", "appointments:write");
field_needs_scope("Appointment.status", "appointments:write");

# The sync feed.
field_needs_scope("AppointmentChange.kind", "appointments:read");
field_needs_scope("AppointmentChange.appointmentId", "appointments:read");
field_needs_scope("AppointmentChange.appointment", "appointments:read");

# The patient record's id links appointments of the same patient.
field_needs_scope("Patient.id", "appointments:read");
field_needs_scope("Patient.firstName", "patients:identity");
field_needs_scope("Patient.lastName", "patients:identity");
field_needs_scope("Patient.gender", "patients:identity");
field_needs_scope("Patient.birthDate", "patients:identity");
field_needs_scope("Patient.phone", "patients:contact");
field_needs_scope("Patient.email", "patients:contact");

# Purpose binding: a partner's work is about appointments near today (reminders, the day's
# schedule, the coming weeks). Who a patient is, how to reach them and why they come are readable
# only for a record inside the grant's reading horizon (days back and ahead of the request), or
# while the practice lets the partner read history (an initial import, until a date). Outside,
# an appointment's times and status stay readable; these fields are FORBIDDEN.
# Only a time the practice set counts (a partner's own bookings aside): an appointment a partner
# rescheduled into the horizon stays outside. A patient is inside while they have an appointment
# at the practice inside the horizon that the practice made and timed (or, for a patient the
# partner itself created, that the partner made): the application decides it in SQL
# (api/services/horizon.py), never per row in the policy.
purpose_bound("Patient.firstName");
purpose_bound("Patient.lastName");
purpose_bound("Patient.gender");
purpose_bound("Patient.birthDate");
purpose_bound("Patient.phone");
purpose_bound("Patient.email");
purpose_bound("Appointment.reason");

within_purpose(_partner: Partner, record: Record) if
    record.in_horizon = true;

within_purpose(partner: Partner, record: Record) if
    history_open(partner, record.grant);

# The practice approved reading history through this grant until `history_until`.
history_open(partner: Partner, grant: Grant) if
    grant.history_until != nil and
    grant.history_until > partner.request_time;

# Types that hold no practice data, only the partner's own account or paging bookkeeping:
# every field is readable by the authenticated partner.
own_account_type("Viewer");
own_account_type("ViewerGrant");
own_account_type("RateLimit");
structural_type("Query");
structural_type("PageInfo");
structural_type("PracticeConnection");
structural_type("PracticeEdge");
structural_type("AppointmentConnection");
structural_type("AppointmentChangeConnection");
structural_type("AppointmentChangeEdge");
structural_type("Mutation");
structural_type("AppointmentBooked");
structural_type("AppointmentRescheduled");
structural_type("AppointmentCancelled");
structural_type("WriteRefused");
structural_type("AppointmentEdge");
structural_type("PractitionerConnection");
structural_type("PractitionerEdge");
