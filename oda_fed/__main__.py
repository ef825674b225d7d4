from oda_fed.cli import app

app(prog_name="oda-fed")
