from genofed.cli.main import main

main()
