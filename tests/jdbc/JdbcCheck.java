// pgjdbc (Debian's libpostgresql-jdbc-java) against a MiniTrue node: a prepared query with
// parameters, and DatabaseMetaData.getTables / getColumns. Prints one line per fact, tab
// separated; test_jdbc.py checks them against the points it loaded.
//
//   javac -cp /usr/share/java/postgresql.jar JdbcCheck.java
//   java -cp /usr/share/java/postgresql.jar:. JdbcCheck jdbc:postgresql://127.0.0.1:PORT/minitrue
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Timestamp;
import java.time.OffsetDateTime;
import java.util.Properties;

public class JdbcCheck {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", "jdbc_user");
        props.setProperty("sslmode", "disable");
        // Prepare server-side from the first execution, so the extended protocol is used
        // with bound parameters, not inlined values.
        props.setProperty("prepareThreshold", "1");
        try (Connection conn = DriverManager.getConnection(args[0], props)) {
            DatabaseMetaData meta = conn.getMetaData();
            System.out.println("product\t" + meta.getDatabaseProductName() + "\t" + meta.getDatabaseMajorVersion());

            String sql = "SELECT time, value FROM readings WHERE device_id = ? AND time >= ? AND value > ? ORDER BY time";
            try (PreparedStatement stmt = conn.prepareStatement(sql)) {
                for (int run = 0; run < 2; run++) {
                    stmt.setString(1, "sensor_1");
                    stmt.setObject(2, OffsetDateTime.parse("2024-01-01T00:05:00Z"));
                    stmt.setDouble(3, 26.5 + run);
                    try (ResultSet rows = stmt.executeQuery()) {
                        while (rows.next()) {
                            OffsetDateTime time = rows.getObject(1, OffsetDateTime.class);
                            System.out.println("row" + run + "\t" + time.toInstant() + "\t" + rows.getDouble(2));
                        }
                    }
                }
            }
            try (PreparedStatement stmt = conn.prepareStatement(
                    "SELECT count(*), max(value) FROM readings WHERE metric = ? AND time < ?")) {
                stmt.setString(1, "humidity");
                stmt.setTimestamp(2, Timestamp.from(java.time.Instant.parse("2024-01-01T00:03:00Z")));
                try (ResultSet rows = stmt.executeQuery()) {
                    rows.next();
                    System.out.println("count\t" + rows.getLong(1) + "\t" + rows.getDouble(2));
                }
            }

            try (ResultSet tables = meta.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (tables.next()) {
                    System.out.println("table\t" + tables.getString("TABLE_SCHEM") + "\t" + tables.getString("TABLE_NAME")
                            + "\t" + tables.getString("TABLE_TYPE"));
                }
            }
            try (ResultSet columns = meta.getColumns(null, "public", "readings", "%")) {
                while (columns.next()) {
                    System.out.println("column\t" + columns.getString("COLUMN_NAME") + "\t" + columns.getString("TYPE_NAME")
                            + "\t" + columns.getInt("DATA_TYPE") + "\t" + columns.getInt("ORDINAL_POSITION"));
                }
            }
        }
    }
}
