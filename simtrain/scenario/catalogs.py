"""The user-editable catalogs, named in one place: folders of plain-text inputs at the top
of the source tree (scenarios/, topologies/, ...) that also ship inside the wheel, under
simtrain/catalogs/ (setup.py copies every folder listed here that exists; the lookup in
simtrain.scenario.files and `simtrain list` go over the same list).

No imports: setup.py reads this file without importing the package.
"""

# folder name -> file suffix of its entries
CATALOGS = {
    "scenarios": ".toml",
    "topologies": ".toml",
    "schedules": ".txt",
    "devices": ".toml",
    "stacks": ".toml",  # software stacks; may be absent from a checkout: then nothing ships
}
PACKAGED = "catalogs"  # simtrain/<PACKAGED>/<catalog>/ inside an installed wheel
