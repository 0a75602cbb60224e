// MariaDB Connector/J (JDBC, Debian's libmariadb-java) against the gate of a local cluster;
// run by test_cluster_routing.py::test_jdbc with Java's single-file launcher. Arguments:
// the JDBC URL of the primary target (its options choose client- or server-side prepared
// statements), the user and the password. It prints what it read as one JSON object.
// JDBC is what Java services (Spring, Hibernate, connection pools) use; the driver speaks
// the protocol with its own Java code, apart from libmariadb and the other tested clients.

import java.math.BigDecimal;
import java.sql.CallableStatement;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.SQLTimeoutException;
import java.sql.SQLWarning;
import java.sql.Statement;
import java.sql.Timestamp;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

public class JdbcClient {
    static final Map<String, Object> OUT = new LinkedHashMap<>();

    static String json(Object v) {
        if (v == null) return "null";
        if (v instanceof Number || v instanceof Boolean) return v.toString();
        if (v instanceof List<?> list) {
            List<String> parts = new ArrayList<>();
            for (Object o : list) parts.add(json(o));
            return "[" + String.join(", ", parts) + "]";
        }
        StringBuilder b = new StringBuilder("\"");
        for (char c : v.toString().toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    static String one(Statement s, String sql) throws SQLException {
        try (ResultSet r = s.executeQuery(sql)) {
            r.next();
            return r.getString(1);
        }
    }

    static List<Object> error(SQLException e) {
        return List.of(e.getErrorCode(), e.getSQLState());
    }

    public static void main(String[] args) throws Exception {
        try (Connection c = DriverManager.getConnection(args[0], args[1], args[2])) {
            OUT.put("version", c.getMetaData().getDatabaseProductVersion());
            try (Statement s = c.createStatement()) {
                s.execute("DROP TABLE IF EXISTS jdbc_t");
                s.execute("CREATE TABLE jdbc_t (id BIGINT PRIMARY KEY AUTO_INCREMENT, "
                        + "s VARCHAR(20), d DATETIME(3), n DECIMAL(10,2), b BLOB)");
                s.executeUpdate("INSERT INTO jdbc_t (s) VALUES ('first')",
                        Statement.RETURN_GENERATED_KEYS);
                try (ResultSet k = s.getGeneratedKeys()) {
                    k.next();
                    OUT.put("generated", k.getLong(1));
                }
                s.executeQuery("SELECT CAST('abc' AS SIGNED)").close();
                SQLWarning w = s.getWarnings();
                OUT.put("warning", w == null ? null : List.of(w.getErrorCode(), w.getMessage()));
            }
            // A batch of prepared inserts, with their generated keys.
            try (PreparedStatement p = c.prepareStatement(
                    "INSERT INTO jdbc_t (s, d, n, b) VALUES (?, ?, ?, ?)",
                    Statement.RETURN_GENERATED_KEYS)) {
                for (int i = 0; i < 3; i++) {
                    p.setString(1, "h\u00e9" + i);
                    p.setTimestamp(2, Timestamp.valueOf("2026-12-05 10:11:12.345"));
                    p.setBigDecimal(3, new BigDecimal("12.34"));
                    p.setBytes(4, new byte[] {0, 1, (byte) 255});
                    p.addBatch();
                }
                List<Object> counts = new ArrayList<>();
                for (int n : p.executeBatch()) counts.add(n);
                OUT.put("batch", counts);
                List<Object> keys = new ArrayList<>();
                try (ResultSet k = p.getGeneratedKeys()) {
                    while (k.next()) keys.add(k.getLong(1));
                }
                OUT.put("batch_keys", keys);
            }
            try (PreparedStatement p = c.prepareStatement(
                    "SELECT s, d, n, b FROM jdbc_t WHERE s LIKE ? ORDER BY id LIMIT 1")) {
                p.setString(1, "h%");
                try (ResultSet r = p.executeQuery()) {
                    r.next();
                    byte[] b = r.getBytes(4);
                    OUT.put("row", List.of(r.getString(1), r.getTimestamp(2).toString(),
                            r.getBigDecimal(3).toPlainString(), b.length, b[2] & 0xff));
                }
            }
            // A transaction sees its own write; the rollback undoes it.
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.executeUpdate("UPDATE jdbc_t SET s = 'in tx' WHERE s = 'first'");
                OUT.put("in_tx", one(s, "SELECT COUNT(*) FROM jdbc_t WHERE s = 'in tx'"));
            }
            c.rollback();
            // Spring's @Transactional: autocommit off, reads first. As on MySQL, they share
            // one snapshot: another session's insert shows only after the commit.
            try (Connection other = DriverManager.getConnection(args[0], args[1], args[2]);
                    Statement s = c.createStatement();
                    Statement o = other.createStatement()) {
                String before = one(s, "SELECT COUNT(*) FROM jdbc_t");
                o.executeUpdate("INSERT INTO jdbc_t (s) VALUES ('other')");
                String during = one(s, "SELECT COUNT(*) FROM jdbc_t");
                c.commit();
                OUT.put("snapshot", List.of(before, during, one(s, "SELECT COUNT(*) FROM jdbc_t")));
                c.commit();
            }
            c.setAutoCommit(true);
            c.setTransactionIsolation(Connection.TRANSACTION_READ_COMMITTED);
            try (Statement s = c.createStatement()) {
                OUT.put("after_rollback", one(s, "SELECT COUNT(*) FROM jdbc_t WHERE s = 'in tx'"));
                OUT.put("isolation", one(s, "SELECT @@tx_isolation"));
            }
            // setQueryTimeout: the driver kills the statement (KILL QUERY on a second
            // connection, which the gate passes to the tablet); the session goes on.
            try (Statement s = c.createStatement()) {
                s.setQueryTimeout(1);
                long start = System.nanoTime();
                try {
                    s.executeQuery("SELECT SLEEP(20)").close();
                    OUT.put("timeout", "none");
                } catch (SQLTimeoutException e) {
                    OUT.put("timeout", error(e));
                }
                OUT.put("timeout_ms", (System.nanoTime() - start) / 1_000_000);
                OUT.put("after_timeout", one(s, "SELECT 1 + 1"));
            }
            // A stored procedure whose OUT parameter is a user variable.
            try (Statement s = c.createStatement()) {
                s.execute("DROP PROCEDURE IF EXISTS jdbc_double");
                s.execute("CREATE PROCEDURE jdbc_double(IN x INT, OUT y INT) "
                        + "BEGIN SELECT x AS given; SET y = x * 2; END");
            }
            try (CallableStatement cs = c.prepareCall("{call jdbc_double(?, @y)}")) {
                cs.setInt(1, 21);
                cs.execute();
                try (ResultSet r = cs.getResultSet()) {
                    r.next();
                    OUT.put("call_result", r.getInt(1));
                }
            }
            // A procedure returning two result sets, as a server-side or client-side
            // prepared CALL.
            try (Statement s = c.createStatement()) {
                s.execute("DROP PROCEDURE IF EXISTS jdbc_two");
                s.execute("CREATE PROCEDURE jdbc_two(IN n INT) BEGIN SELECT n; "
                        + "SELECT n + 1 UNION ALL SELECT n + 2; END");
            }
            try (CallableStatement cs = c.prepareCall("{call jdbc_two(?)}")) {
                cs.setInt(1, 3);
                List<Object> sets = new ArrayList<>();
                boolean isSet = cs.execute();
                while (isSet || cs.getUpdateCount() != -1) {
                    if (isSet) {
                        List<Object> rows = new ArrayList<>();
                        try (ResultSet r = cs.getResultSet()) {
                            while (r.next()) rows.add(r.getInt(1));
                        }
                        sets.add(rows);
                    }
                    isSet = cs.getMoreResults();
                }
                OUT.put("call_sets", sets);
            }
            try (Statement s = c.createStatement()) {
                OUT.put("call_out", one(s, "SELECT @y"));
                try {
                    s.executeQuery("SELECT * FROM jdbc_nosuch").close();
                } catch (SQLException e) {
                    OUT.put("error", error(e));
                }
            }
            // A replica target, chosen the JDBC way.
            c.setCatalog("commerce@replica");
            try (Statement s = c.createStatement()) {
                OUT.put("replica_server_id", one(s, "SELECT @@server_id"));
                try {
                    s.executeUpdate("INSERT INTO jdbc_t (s) VALUES ('no')");
                    OUT.put("replica_write", "accepted");
                } catch (SQLException e) {
                    OUT.put("replica_write", error(e));
                }
            }
            OUT.put("valid", c.isValid(5));
        }
        List<String> parts = new ArrayList<>();
        for (Map.Entry<String, Object> e : OUT.entrySet()) {
            parts.add(json(e.getKey()) + ": " + json(e.getValue()));
        }
        System.out.println("{" + String.join(", ", parts) + "}");
    }
}
