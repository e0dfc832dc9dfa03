"""The `@constraint` of each string the schema takes in, from the column (or codec) that bounds it."""

from api.data import models
from api.protection.input_rules import Constraint, TextFormat, from_column
from api.services import cursors

# Every public id column has the size `api.data.models._public_id` gives it.
ID = from_column(models.Practice.public_id, TextFormat.TOKEN)
CURSOR = Constraint(max_length=cursors.MAX_LENGTH, format=TextFormat.TOKEN)
FIRST_NAME = from_column(models.Patient.first_name, TextFormat.LINE, min_length=1)
LAST_NAME = from_column(models.Patient.last_name, TextFormat.LINE, min_length=1)
PHONE = from_column(models.Patient.phone, TextFormat.PHONE)
EMAIL = from_column(models.Patient.email, TextFormat.EMAIL)
REASON = from_column(models.Appointment.reason, TextFormat.TEXT)
IDEMPOTENCY_KEY = from_column(models.IdempotencyRecord.key, TextFormat.LINE, min_length=1)
