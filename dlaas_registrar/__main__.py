from dlaas_registrar.app import main

main()
