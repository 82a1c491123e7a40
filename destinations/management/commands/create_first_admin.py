import secrets

from django.contrib.auth import get_user_model

from project.commands import ProductCommand


class Command(ProductCommand):
    help = "Create a first admin user with a generated password, only if no superuser exists."

    def add_arguments(self, parser):
        parser.add_argument(
            "--username", default="admin", help="Name of the user to create (default: admin)."
        )

    def handle(self, *args, username: str, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(
            self.style.SUCCESS("Created the first admin user (shown once, write it down):")
        )
        self.stdout.write(f"  username: {username}\n  password: {password}")
