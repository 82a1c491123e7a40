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
        # Forms (model_to_dict) read values through here: they never need the plaintext, and
        # must not carry it. Code that needs the key reads the attribute.
        return ""

    def value_to_string(self, obj):
        # Serializers (dumpdata) write this: a token under the first key, never the plaintext,
        # so that loaddata under the same FIELD_ENCRYPTION_KEYS restores the secret (to_python).
        value = getattr(obj, self.attname)
        return None if value is None else encryption.encrypt(value)

    def to_python(self, value):
        # Deserializers (loaddata) hand over what value_to_string wrote. The token is decrypted
        # here so that save() encrypts the plaintext once; a plain value (a fixture written by
        # hand) passes through. A token no key decrypts stops the load: restoring it as an
        # empty or unreadable secret would lose it without a word.
        if isinstance(value, str) and encryption.looks_like_token(value):
            try:
                return encryption.decrypt(value)
            except encryption.DecryptionError:
                raise encryption.DecryptionError(
                    f"{self.model.__name__}.{self.name} holds a token that no key in "
                    f"{encryption.SETTING} can decrypt: load it with the keys of the database it "
                    f"was dumped from (a new first key may go before them)."
                ) from None
        return super().to_python(value)

    def get_lookup(self, lookup_name):
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)
        raise FieldError(
            f"{self.model.__name__}.{self.name} is encrypted; filtering on it (__{lookup_name}) "
            f"is not possible."
        )

    def get_transform(self, lookup_name):
        raise FieldError(f"{self.model.__name__}.{self.name} is encrypted and has no transforms.")
