"""Config fragments the tests share: the issue's NATO + Ukraine entities and rule."""

NATO_UKRAINE_ENTITIES = """
[entities.nato]
names = ["NATO", "North Atlantic Treaty Organization"]

[entities.ukraine]
names = ["Ukraine", "Ukrainian", "Kyiv"]
"""
