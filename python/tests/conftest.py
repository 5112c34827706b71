# pytester runs small test files in a fresh pytest session, so the plugin's own messages
# (what a user sees when lbsim does not start) can be checked.
pytest_plugins = ["pytester"]
