from deepatlas.cli.app import main

main()
