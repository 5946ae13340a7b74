from server.cli import main

if __name__ == "__main__":  # engines spawn processes: the guard is required
    main()
