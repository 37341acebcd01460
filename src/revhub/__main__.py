from revhub.cli import app

app(prog_name="revhub")
