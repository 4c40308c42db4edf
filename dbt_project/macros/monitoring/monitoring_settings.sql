{#
    Parameters of the monitoring marts. Their defaults equal `flows/monitoring.yml`; the
    monitoring step passes that file's values with `--vars`, so an analyst can change one place.
#}

{% macro monitoring_psi_bins() %}
    {#- Number of quantile bins of a numeric feature or score; missing values get one more bin. -#}
    {{ return(var('monitoring_psi_bins', 10) | int) }}
{% endmacro %}


{% macro monitoring_psi_epsilon() %}
    {#- Share given to a bin that is empty on one side, so ln(actual / expected) stays finite. -#}
    {{ return(var('monitoring_psi_epsilon', 0.0001) | float) }}
{% endmacro %}


{% macro monitoring_sensitive_columns() %}
    {#- Columns of `applications` whose groups the fairness mart compares. -#}
    {{ return(var('monitoring_sensitive_columns', ['code_gender'])) }}
{% endmacro %}


{% macro monitoring_fairness_min_group_rows() %}
    {#- Groups with fewer scored rows get no approval-rate ratio and are not the reference group. -#}
    {{ return(var('monitoring_fairness_min_group_rows', 30) | int) }}
{% endmacro %}
