"""A text field stored as a Fernet token and read back as plain text."""

from django.core.exceptions import FieldError
from django.db import models

from . import encryption


class EncryptedTextField(models.TextField):
    """Holds a secret: the column only ever contains Fernet tokens.

    Lookups are refused because the same plaintext encrypts to a different token every time,
    so a filter on the column could never match and would only mislead.
    """

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        return encryption.decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None:
            return None
        return encryption.encrypt(value)

    def value_from_object(self, obj):
        # Forms (model_to_dict) and serializers (dumpdata) read values through here: they never
        # need the plaintext, and must not carry it. Code that needs the key reads the attribute.
        return ""

    def get_lookup(self, lookup_name):
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)
        raise FieldError(
            f"{self.model.__name__}.{self.name} is encrypted; filtering on it (__{lookup_name}) "
            f"is not possible."
        )

    def get_transform(self, lookup_name):
        raise FieldError(f"{self.model.__name__}.{self.name} is encrypted and has no transforms.")
