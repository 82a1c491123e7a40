"""The routing keys of the suite's fixtures; the leak guard fails any test that logs one."""

# Kept free of Django imports: the leak guard is also run as a plugin of a Django-less pytest.

# A key that looks like PagerDuty's: 32 letters and digits. Its tail is what may be shown.
ROUTING_KEY = "Rk7Q2mZp9LxW4vT8nB3cY6hJ1dF5gS0e"
OTHER_ROUTING_KEY = "Zy9X8w7V6u5T4s3R2q1P0onMlKjIhGfE"
# What pages, logs and errors show instead of ROUTING_KEY.
MASKED_KEY = "••••" + ROUTING_KEY[-4:]
