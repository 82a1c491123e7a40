from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from destinations.admin.signin import reset_second_factor
from project.commands import ProductCommand


class Command(ProductCommand):
    help = (
        "Remove a user's second factor (authenticator app and recovery codes), for a lost phone. "
        "With ADMIN_MFA_REQUIRED the user sets up a new app at the next sign-in; sessions that "
        "the old app verified are no longer verified."
    )

    def add_arguments(self, parser):
        parser.add_argument("username", help="The admin user whose second factor to remove.")

    def handle(self, *args, username: str, **options):
        users = get_user_model()
        try:
            user = users.objects.get_by_natural_key(username)
        except users.DoesNotExist:
            raise CommandError(f"No user is named {username!r}.") from None
        removed = reset_second_factor(user=user)
        if removed:
            self.stdout.write(
                f"Removed {removed} second-factor device(s) of {username!r}: the next sign-in "
                "sets up an authenticator app again."
            )
        else:
            self.stdout.write(f"{username!r} had no second factor; nothing to remove.")
