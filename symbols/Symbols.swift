public enum Symbols {}
