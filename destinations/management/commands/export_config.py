from destinations.configuration.export import FORMATS, export_config, render_config
from project.commands import ProductCommand


class Command(ProductCommand):
    help = (
        "Print every destination and detection as a configuration file (YAML, or JSON), in the "
        "form apply_config reads. Keys appear only as {is_secret: true}, never their value."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--format",
            choices=FORMATS,
            default="yaml",
            help="yaml (the default) or json.",
        )

    def handle(self, *args, format: str, **options):
        self.stdout.write(render_config(export_config(), output_format=format), ending="")
